"""The map methods of the Centrifugo server API over GRPC (grpcio stubs of
natsgate's proto/api.proto), driven by tests/map_api.rs: every map method,
its options and refusals, and map commands in Batch. Prints the transcript
as JSON: [{"call": name, "reply": {...}}, ...] (protobuf's JSON mapping with
the .proto field names, zero values left out as protobuf leaves them).

Environment: GRPC_TARGET (host:port), GRPC_KEY, MAP_CHANNEL (a channel of a
persistent map namespace, unique per run), EPH_CHANNEL (one of an ephemeral
map namespace), PLAIN_CHANNEL (one of a namespace that is no map).
The stubs (api_pb2, api_pb2_grpc) must be on PYTHONPATH.
"""

import json
import os

import grpc
from google.protobuf import json_format

import api_pb2 as pb
import api_pb2_grpc as pb_grpc

TIMEOUT = 10


def main():
    stub = pb_grpc.CentrifugoApiStub(grpc.insecure_channel(os.environ["GRPC_TARGET"]))
    meta = [("authorization", "apikey " + os.environ["GRPC_KEY"])]
    ch = os.environ["MAP_CHANNEL"]
    eph = os.environ["EPH_CHANNEL"]
    plain = os.environ["PLAIN_CHANNEL"]
    out = []

    def call(name, method, request):
        reply = getattr(stub, method)(request, metadata=meta, timeout=TIMEOUT)
        out.append({"call": name, "reply": json_format.MessageToDict(reply, preserving_proto_field_name=True)})

    call("publish a", "MapPublish", pb.MapPublishRequest(channel=ch, key="a", data=b'{"n":1}', tags={"t": "1"}))
    call("publish b binary", "MapPublish", pb.MapPublishRequest(channel=ch, key="b", data=b"\x00\x01"))
    call("if_new taken", "MapPublish", pb.MapPublishRequest(channel=ch, key="a", data=b"2", key_mode="if_new"))
    call("if_exists missing", "MapPublish", pb.MapPublishRequest(channel=ch, key="z", data=b"2", key_mode="if_exists"))
    call("bad key_mode", "MapPublish", pb.MapPublishRequest(channel=ch, key="a", data=b"2", key_mode="maybe"))
    call("version 3", "MapPublish", pb.MapPublishRequest(channel=ch, key="v", data=b"3", version=3, version_epoch="e"))
    call("version 2", "MapPublish", pb.MapPublishRequest(channel=ch, key="v", data=b"2", version=2, version_epoch="e"))
    call("idempotent", "MapPublish", pb.MapPublishRequest(channel=ch, key="i", data=b"1", idempotency_key="g1"))
    call("idempotent again", "MapPublish", pb.MapPublishRequest(channel=ch, key="i", data=b"2", idempotency_key="g1"))
    call("score ignored", "MapPublish", pb.MapPublishRequest(channel=ch, key="s", data=b"1", score=7, delta=False))
    call("remove missing", "MapRemove", pb.MapRemoveRequest(channel=ch, key="nope"))
    call("remove s", "MapRemove", pb.MapRemoveRequest(channel=ch, key="s", idempotency_key="g2"))
    call("state", "MapReadState", pb.MapReadStateRequest(channel=ch, limit=-1))
    call("state page", "MapReadState", pb.MapReadStateRequest(channel=ch, limit=2))
    call("state key", "MapReadState", pb.MapReadStateRequest(channel=ch, key="v"))
    call("state bad revision", "MapReadState", pb.MapReadStateRequest(channel=ch, revision_epoch="other"))
    call("stream", "MapReadStream", pb.MapReadStreamRequest(channel=ch, limit=-1))
    call("stream reversed", "MapReadStream", pb.MapReadStreamRequest(channel=ch, limit=2, reverse=True))
    call("stats", "MapStats", pb.MapStatsRequest(channel=ch))
    call("ephemeral version", "MapPublish", pb.MapPublishRequest(channel=eph, key="a", data=b"1", version=1))
    call("not a map", "MapStats", pb.MapStatsRequest(channel=plain))
    call("unknown namespace", "MapClear", pb.MapClearRequest(channel="nons:x"))
    call("empty channel", "MapReadStream", pb.MapReadStreamRequest(channel=""))
    batch = pb.BatchRequest(commands=[
        pb.Command(map_publish=pb.MapPublishRequest(channel=ch, key="c", data=b'"c"')),
        pb.Command(map_remove=pb.MapRemoveRequest(channel=ch, key="c")),
        pb.Command(map_read_state=pb.MapReadStateRequest(channel=ch, key="a")),
        pb.Command(map_read_stream=pb.MapReadStreamRequest(channel=ch, limit=1, reverse=True)),
        pb.Command(map_stats=pb.MapStatsRequest(channel=ch)),
        pb.Command(map_clear=pb.MapClearRequest(channel=ch)),
        pb.Command(map_stats=pb.MapStatsRequest(channel=ch)),
        pb.Command(map_publish=pb.MapPublishRequest(channel="", key="c")),
    ])
    call("batch", "Batch", batch)
    call("clear", "MapClear", pb.MapClearRequest(channel=ch))
    call("stats after clear", "MapStats", pb.MapStatsRequest(channel=ch))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
