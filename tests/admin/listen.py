"""A centrifuge-python client for tests/admin.rs: connects to URL with
TOKEN, subscribes to CHANNEL and prints one JSON line per event on stdout
("subscribed", then {"publication": data}), until its stdin closes."""

import asyncio
import json
import os
import sys

from centrifuge import Client, SubscriptionEventHandler


def say(obj):
    print(json.dumps(obj), flush=True)


class Events(SubscriptionEventHandler):
    async def on_subscribed(self, ctx):
        say({"event": "subscribed"})

    async def on_publication(self, ctx):
        say({"event": "publication", "data": ctx.pub.data})

    async def on_error(self, ctx):
        say({"event": "error", "error": str(ctx.error)})


async def main():
    client = Client(os.environ["URL"], token=os.environ["TOKEN"])
    sub = client.new_subscription(os.environ["CHANNEL"], events=Events())
    await client.connect()
    await sub.subscribe()
    # Runs until the parent closes stdin (or dies).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await client.disconnect()


asyncio.run(main())
