"""An application backend for natsgate's GRPC proxy, in Python (grpcio), from
natsgate's proto/proxy.proto; driven by tests/proxy.rs. It makes the same
decisions as the HTTP backend in tests/proxy.rs and records each request.

Prints "PORT <n>" once serving on 127.0.0.1; appends one JSON line per request
({"path": "/connect", "body": {...}, "metadata": {...}}) to the file named by
RECORD. Payload fields (data, info, meta) are recorded as parsed JSON.
The stubs (proxy_pb2, proxy_pb2_grpc) must be on PYTHONPATH.
"""

import json
import os
import sys
import time
from concurrent import futures

import grpc

import proxy_pb2 as pb
import proxy_pb2_grpc as pb_grpc

RECORD = os.environ["RECORD"]
PAYLOADS = ("data", "info", "meta")


def record(path, request, context):
    body = {}
    for field, value in request.ListFields():
        name = field.name
        if name in PAYLOADS:
            body[name] = json.loads(value.decode()) if value else None
        else:
            body[name] = value if not hasattr(value, "__iter__") or isinstance(value, str) else list(value)
    metadata = {k: v for k, v in context.invocation_metadata()}
    with open(RECORD, "a") as f:
        f.write(json.dumps({"path": path, "body": body, "metadata": metadata}) + "\n")


def js(value):
    return json.dumps(value).encode()


class Backend(pb_grpc.CentrifugoProxyServicer):
    def Connect(self, request, context):
        record("/connect", request, context)
        result = pb.ConnectResult(
            user="alice",
            info=js({"name": "Alice"}),
            data=js({"welcome": True}),
            channels=["news"],
            meta=js({"tenant": 7}),
        )
        return pb.ConnectResponse(result=result)

    def Subscribe(self, request, context):
        record("/subscribe", request, context)
        if request.channel in ("px:refused", "ms:refused"):
            return pb.SubscribeResponse(error=pb.Error(code=4001, message="not for you"))
        if request.channel == "ms:board":
            return pb.SubscribeResponse(result=pb.SubscribeResult(data=js({"map": True}), info=js({"seat": 2})))
        if request.channel == "px:gone":
            return pb.SubscribeResponse(disconnect=pb.Disconnect(code=4501, reason="go away"))
        return pb.SubscribeResponse(result=pb.SubscribeResult(data=js({"granted": True})))

    def Publish(self, request, context):
        record("/publish", request, context)
        data = json.loads(request.data.decode())
        return pb.PublishResponse(result=pb.PublishResult(data=js({"rewritten": data})))

    def RPC(self, request, context):
        record("/rpc", request, context)
        if request.method == "slow":
            time.sleep(3)
        echo = json.loads(request.data.decode()) if request.data else None
        return pb.RPCResponse(result=pb.RPCResult(data=js({"method": request.method, "echo": echo})))

    def Refresh(self, request, context):
        record("/refresh", request, context)
        return pb.RefreshResponse(result=pb.RefreshResult(expire_at=int(time.time()) + 3600))

    def MapPublish(self, request, context):
        record("/map_publish", request, context)
        if request.key == "keep":
            return pb.MapPublishResponse(result=pb.MapPublishResult())
        if request.key == "rekey":
            return pb.MapPublishResponse(result=pb.MapPublishResult(key="renamed", tags={"by": "backend"}))
        if request.key == "denied":
            return pb.MapPublishResponse(error=pb.Error(code=4002, message="read only"))
        if request.key == "gone":
            return pb.MapPublishResponse(disconnect=pb.Disconnect(code=4503, reason="map bye"))
        data = json.loads(request.data.decode())
        return pb.MapPublishResponse(result=pb.MapPublishResult(data=js({"rewritten": data})))

    def MapRemove(self, request, context):
        record("/map_remove", request, context)
        if request.key == "locked":
            return pb.MapRemoveResponse(error=pb.Error(code=4004, message="locked"))
        if request.key == "alias":
            return pb.MapRemoveResponse(result=pb.MapRemoveResult(key="renamed"))
        return pb.MapRemoveResponse(result=pb.MapRemoveResult())

    def SubRefresh(self, request, context):
        record("/sub_refresh", request, context)
        return pb.SubRefreshResponse(result=pb.SubRefreshResult(expire_at=int(time.time()) + 3600))


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_CentrifugoProxyServicer_to_server(Backend(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    # Runs until the test kills it (or its stdin closes).
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
