"""shared_poll_publish of the Centrifugo server API over GRPC (grpcio stubs of
natsgate's proto/api.proto), driven by tests/shared_poll_api.rs: the
SharedPollPublish method and the command in Batch, then the refusals.
Prints the transcript as JSON: [{"call": name, "reply": {...}}, ...]
(protobuf's JSON mapping with the .proto field names).

Environment: GRPC_TARGET (host:port), GRPC_KEY, CHANNEL (a channel of a
versioned namespace with publish_enabled, whose keys "g1" and "g2" a client
tracks), VERSIONLESS (one of a versionless namespace), CLOSED (one of a
versioned namespace without publish_enabled), PLAIN (one of a namespace
that is no shared poll). The stubs (api_pb2, api_pb2_grpc) must be on
PYTHONPATH.
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
    ch = os.environ["CHANNEL"]
    out = []

    def call(name, method, request):
        reply = getattr(stub, method)(request, metadata=meta, timeout=TIMEOUT)
        out.append({"call": name, "reply": json_format.MessageToDict(reply, preserving_proto_field_name=True)})

    def publish(name, **fields):
        call(name, "SharedPollPublish", pb.SharedPollPublishRequest(**fields))

    publish("publish g1", channel=ch, key="g1", data=b'{"via":"grpc"}', version=1)
    batch = pb.BatchRequest(commands=[
        pb.Command(shared_poll_publish=pb.SharedPollPublishRequest(
            channel=ch, key="g2", b64data="eyJ2aWEiOiJncnBjIGJhdGNoIn0=", version=1)),
        pb.Command(shared_poll_publish=pb.SharedPollPublishRequest(channel=ch, key="g2")),
    ])
    call("batch", "Batch", batch)
    publish("no key", channel=ch, data=b"1", version=1)
    publish("no version", channel=ch, key="g1", data=b"1")
    publish("no channel", key="g1", data=b"1", version=1)
    publish("unknown namespace", channel="nons:x", key="g1", data=b"1", version=1)
    publish("versionless", channel=os.environ["VERSIONLESS"], key="g1", data=b"1", version=1)
    publish("publish disabled", channel=os.environ["CLOSED"], key="g1", data=b"1", version=1)
    publish("not shared poll", channel=os.environ["PLAIN"], key="g1", data=b"1", version=1)
    publish("bad b64data", channel=ch, key="g1", b64data="***", version=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
