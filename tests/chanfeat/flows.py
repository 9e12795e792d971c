"""centrifuge-python flows for issue #20's channel features, run by
tests/chanfeat_sdk.rs against two natsgate gateways on NATS and against
Centrifugo v6.9.1 with the same assertions.

Environment: URL_A, URL_B (the same for Centrifugo), TOKEN (connection
token of USER), CACHE_TOKEN (another user), USER, CACHE_CHANNEL (three
publications were made to it, the last {"i": 3}), API_URL, API_KEY.
Prints "ok" and exits 0 when every assertion holds; every wait is bounded.
"""

import asyncio
import json
import os
import urllib.request

from centrifuge import (
    Client,
    ClientEventHandler,
    StreamPosition,
    SubscriptionEventHandler,
)

WAIT = 8.0


def publish(channel, data):
    body = json.dumps({"channel": channel, "data": data}).encode()
    request = urllib.request.Request(
        os.environ["API_URL"] + "/api/publish",
        data=body,
        headers={"X-API-Key": os.environ["API_KEY"]},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        reply = json.loads(response.read())
    assert "result" in reply, reply


class Recorder(ClientEventHandler):
    def __init__(self):
        self.subscribed = asyncio.Queue()
        self.publications = asyncio.Queue()
        self.disconnected = asyncio.Queue()

    async def on_subscribed(self, ctx):
        await self.subscribed.put(ctx)

    async def on_publication(self, ctx):
        await self.publications.put(ctx)

    async def on_disconnected(self, ctx):
        await self.disconnected.put(ctx)


async def personal():
    user = os.environ["USER_ID"]
    channel = f"personal:#{user}"
    events = Recorder()
    first = Client(os.environ["URL_A"], token=os.environ["TOKEN"], events=events)
    await first.connect()
    ctx = await asyncio.wait_for(events.subscribed.get(), WAIT)
    assert ctx.channel == channel, ctx
    assert ctx.recoverable and ctx.positioned, ctx
    publish(channel, {"hello": user})
    pub = await asyncio.wait_for(events.publications.get(), WAIT)
    assert pub.channel == channel and pub.pub.data == {"hello": user}, pub

    other = Recorder()
    second = Client(os.environ["URL_B"], token=os.environ["TOKEN"], events=other)
    await second.connect()
    ctx = await asyncio.wait_for(other.subscribed.get(), WAIT)
    assert ctx.channel == channel, ctx
    closed = await asyncio.wait_for(events.disconnected.get(), WAIT)
    assert closed.code == 3504, closed
    await second.disconnect()
    await first.disconnect()


class SubRecorder(SubscriptionEventHandler):
    def __init__(self):
        self.subscribed = asyncio.Queue()
        self.publications = asyncio.Queue()

    async def on_subscribed(self, ctx):
        await self.subscribed.put(ctx)

    async def on_publication(self, ctx):
        await self.publications.put(ctx)


async def cache():
    channel = os.environ["CACHE_CHANNEL"]
    client = Client(os.environ["URL_A"], token=os.environ["CACHE_TOKEN"])

    async def get_state(_channel):
        # No state yet: recover from nothing, which cache mode answers with
        # the latest publication.
        return StreamPosition(offset=0, epoch="")

    events = SubRecorder()
    sub = client.new_subscription(channel, events=events, get_state=get_state)
    await client.connect()
    await sub.subscribe()
    ctx = await asyncio.wait_for(events.subscribed.get(), WAIT)
    assert ctx.was_recovering and ctx.recovered, ctx
    pub = await asyncio.wait_for(events.publications.get(), WAIT)
    assert pub.pub.data == {"i": 3}, pub
    publish(channel, {"i": 4})
    pub = await asyncio.wait_for(events.publications.get(), WAIT)
    assert pub.pub.data == {"i": 4}, pub
    await client.disconnect()


async def main():
    await personal()
    await cache()
    print("ok", flush=True)


asyncio.run(asyncio.wait_for(main(), 60))
