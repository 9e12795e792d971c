"""centrifuge-python (0.7.0) through natsgate's backend proxy, driven by
tests/proxy_sdk.rs: connects WITHOUT a token (the connect proxy decides),
gets the backend's server-side subscription, subscribes through the
subscribe proxy (allowed, refused with the backend's error), publishes data
the backend rewrites, and calls an RPC the backend answers.

Usage: python proxy_sdk.py <ws url>. The upgrade request carries the
headers `x-forward: fwd-value` and `x-grpc-only: grpc-value`. Prints one
line "OK <json summary>" and exits 0, or raises (non-zero exit).
"""

import asyncio
import json
import sys

from centrifuge import (
    Client,
    ClientEventHandler,
    SubscriptionEventHandler,
)

WAIT = 10.0


class ClientEvents(ClientEventHandler):
    def __init__(self):
        self.connected = asyncio.get_running_loop().create_future()
        self.server_subs = asyncio.Queue()

    async def on_connected(self, ctx):
        if not self.connected.done():
            self.connected.set_result(ctx)

    async def on_subscribed(self, ctx):
        await self.server_subs.put(ctx.channel)


class SubEvents(SubscriptionEventHandler):
    def __init__(self):
        self.publications = asyncio.Queue()
        self.unsubscribed = asyncio.get_running_loop().create_future()
        self.subscribed = asyncio.get_running_loop().create_future()

    async def on_subscribed(self, ctx):
        if not self.subscribed.done():
            self.subscribed.set_result(ctx)

    async def on_publication(self, ctx):
        await self.publications.put(ctx.pub.data)

    async def on_unsubscribed(self, ctx):
        if not self.unsubscribed.done():
            self.unsubscribed.set_result(ctx)


async def main(url):
    events = ClientEvents()
    client = Client(
        url,
        events=events,
        data={"hello": "python"},
        name="python-sdk",
        headers={"x-forward": "fwd-value", "x-grpc-only": "grpc-value"},
    )
    await client.connect()
    connected = await asyncio.wait_for(events.connected, WAIT)
    assert connected.data == {"welcome": True}, connected.data
    # The backend's `channels` (both backends name "news"; one also has `subs`).
    while (await asyncio.wait_for(events.server_subs.get(), WAIT)) != "news":
        pass

    sub_events = SubEvents()
    sub = client.new_subscription("px:python", events=sub_events, data={"want": "py"})
    await sub.subscribe()
    subscribed = await asyncio.wait_for(sub_events.subscribed, WAIT)
    assert subscribed.data == {"granted": True}, subscribed.data

    await sub.publish({"text": "hi"})
    data = await asyncio.wait_for(sub_events.publications.get(), WAIT)
    assert data == {"rewritten": {"text": "hi"}}, data

    result = await client.rpc("sum", [1, 2])
    assert result.data["method"] == "sum" and result.data["echo"] == [1, 2], result.data

    refused_events = SubEvents()
    refused = client.new_subscription("px:refused", events=refused_events)
    await refused.subscribe()
    unsubscribed = await asyncio.wait_for(refused_events.unsubscribed, WAIT)
    assert (unsubscribed.code, unsubscribed.reason) == (4001, "not for you"), (unsubscribed.code, unsubscribed.reason)

    await client.disconnect()
    print("OK " + json.dumps({"client": connected.client, "rpc": result.data}), flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))
