"""centrifuge-python flows for delta compression and tags filters (issue
#20), run by tests/delta_sdk.rs against two natsgate gateways on NATS (the
API on one, the subscribers on the other), on the embedded broker, and
against Centrifugo v6.9.1 with the same assertions, in JSON and Protobuf.

Environment: URL (the subscribers' server), TOKEN, API_URL, API_KEY,
SUFFIX (makes channel names unique). Namespaces: `dl` (history, recovery,
fossil deltas, tags filters) and `plain` (history only).
Prints "ok" and exits 0 when every assertion holds; every wait is bounded.
"""

import asyncio
import json
import os
import urllib.request

from centrifuge import (
    Client,
    DeltaType,
    Filter,
    FilterNode,
    SubscriptionEventHandler,
)

WAIT = 8.0


def api(method, params):
    request = urllib.request.Request(
        os.environ["API_URL"] + "/api/" + method,
        data=json.dumps(params).encode(),
        headers={"X-API-Key": os.environ["API_KEY"]},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        reply = json.loads(response.read())
    assert "result" in reply, (method, params, reply)


def document(n):
    """Changes a little with every publication (as tests/delta.rs)."""
    items = [{"id": i, "name": f"item {i}", "price": i * 10 + n % 3} for i in range(40)]
    return {"n": n, "title": "a document that changes a little with every publication", "items": items}


class Recorder(SubscriptionEventHandler):
    def __init__(self):
        self.subscribed = asyncio.Queue()
        self.unsubscribed = asyncio.Queue()
        self.publications = asyncio.Queue()

    async def on_subscribed(self, ctx):
        await self.subscribed.put(ctx)

    async def on_unsubscribed(self, ctx):
        await self.unsubscribed.put(ctx)

    async def on_publication(self, ctx):
        await self.publications.put(ctx)


def data_of(pub, protobuf):
    return json.loads(pub.data) if protobuf else pub.data


async def delta(protobuf):
    channel = f"dl:py-delta-{protobuf}-{os.environ['SUFFIX']}"
    client = Client(os.environ["URL"], token=os.environ["TOKEN"], use_protobuf=protobuf)
    events = Recorder()
    sub = client.new_subscription(channel, events=events, delta=DeltaType.FOSSIL, recoverable=True)
    await client.connect()
    await sub.subscribe()
    await asyncio.wait_for(events.subscribed.get(), WAIT)
    deltas = 0
    for n in range(10):
        api("publish", {"channel": channel, "data": document(n), "delta": True})
        ctx = await asyncio.wait_for(events.publications.get(), WAIT)
        assert data_of(ctx.pub, protobuf) == document(n), (n, ctx)
        deltas += ctx.pub.delta
    assert deltas == 9, f"all but the first are deltas: {deltas}"

    # Away, then back with recovery: first recovered whole, then deltas.
    await client.disconnect()
    for n in range(10, 13):
        api("publish", {"channel": channel, "data": document(n), "delta": True})
    await client.connect()
    ctx = await asyncio.wait_for(events.subscribed.get(), WAIT)
    assert ctx.was_recovering and ctx.recovered, ctx
    flags = []
    for n in range(10, 14):
        if n == 13:
            api("publish", {"channel": channel, "data": document(n), "delta": True})
        ctx = await asyncio.wait_for(events.publications.get(), WAIT)
        assert data_of(ctx.pub, protobuf) == document(n), (n, ctx)
        flags.append(ctx.pub.delta)
    assert flags == [False, True, True, True], flags
    await client.disconnect()


# (filter, indexes of TAGGED that pass), as in tests/js/scenarios/delta.mjs.
TAGGED = [
    {"kind": "trade", "sym": "BTCUSD", "price": "100.5"},
    {"kind": "quote", "sym": "BTCUSD", "price": "99"},
    {"kind": "trade", "sym": "ETHUSD", "price": "10"},
    {"kind": "news"},
    {},
    {"kind": "quote", "sym": "ETHBTC", "price": "1000.25"},
]
FILTERS = [
    (Filter.eq("kind", "trade"), [0, 2]),
    (Filter.is_in("kind", ["quote", "news"]), [1, 3, 5]),
    (Filter.all(Filter.eq("kind", "trade"), Filter.starts_with("sym", "BTC")), [0]),
    (Filter.any(Filter.eq("kind", "news"), Filter.gte("price", "100")), [0, 3, 5]),
    (Filter.negate(Filter.exists("kind")), [4]),
    (
        Filter.all(
            Filter.not_in("kind", ["trade"]),
            Filter.negate(Filter.any(Filter.contains("sym", "ETH"), Filter.lt("price", "50"))),
        ),
        [1, 3, 4],
    ),
]


async def tags(protobuf):
    client = Client(os.environ["URL"], token=os.environ["TOKEN"], use_protobuf=protobuf)
    await client.connect()
    for i, (tf, expected) in enumerate(FILTERS):
        channel = f"dl:py-tf-{protobuf}-{i}-{os.environ['SUFFIX']}"
        events = Recorder()
        # Or an end marker, so that the end of the stream can be awaited.
        sub = client.new_subscription(
            channel, events=events, tags_filter=Filter.any(tf, Filter.eq("end", "1"))
        )
        await sub.subscribe()
        await asyncio.wait_for(events.subscribed.get(), WAIT)
        for n, t in enumerate(TAGGED):
            api("publish", {"channel": channel, "data": {"n": n}, "tags": t})
        api("publish", {"channel": channel, "data": {"n": "end"}, "tags": {"end": "1"}})
        got = []
        while True:
            ctx = await asyncio.wait_for(events.publications.get(), WAIT)
            n = data_of(ctx.pub, protobuf)["n"]
            if n == "end":
                break
            got.append(n)
        assert got == expected, (i, got, expected)

    bad = [
        ("dl", FilterNode({"key": "k", "cmp": "eq"})),
        ("dl", FilterNode({"key": "k", "cmp": "like", "val": "x"})),
        ("dl", FilterNode({"op": "not", "nodes": []})),
        ("plain", Filter.exists("k")),
    ]
    for i, (ns, tf) in enumerate(bad):
        events = Recorder()
        sub = client.new_subscription(
            f"{ns}:py-bad-{protobuf}-{i}-{os.environ['SUFFIX']}", events=events, tags_filter=tf
        )
        await sub.subscribe()
        ctx = await asyncio.wait_for(events.unsubscribed.get(), WAIT)
        assert (ctx.code, ctx.reason) == (107, "bad request"), (tf, ctx)
    await client.disconnect()


async def main():
    for protobuf in (False, True):
        await delta(protobuf)
        await tags(protobuf)
    print("ok", flush=True)


asyncio.run(asyncio.wait_for(main(), 80))
