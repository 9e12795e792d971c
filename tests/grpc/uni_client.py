"""A uni_grpc client in Python (grpcio), generated from natsgate's
proto/unistream.proto, driven by tests/uni_grpc.rs. Stdlib and grpcio only.

    uni_client.py TARGET TOKEN   call Consume with TOKEN on TARGET (host:port)
                                 and print each push as one JSON line, then
                                 {"end": "<GRPC status code name>"}

Byte fields holding JSON (data, conn_info, chan_info) are printed as JSON.
The stubs (unistream_pb2, unistream_pb2_grpc) must be on PYTHONPATH.
"""

import base64
import json
import sys

import grpc
from google.protobuf import json_format

import unistream_pb2 as pb
import unistream_pb2_grpc as pb_grpc

JSON_BYTES = {"data", "conn_info", "chan_info"}


def readable(value):
    """MessageToDict's base64 byte fields back to the JSON they carry."""
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            if key in JSON_BYTES and isinstance(child, str):
                out[key] = json.loads(base64.b64decode(child))
            else:
                out[key] = readable(child)
        return out
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def main():
    target, token = sys.argv[1], sys.argv[2]
    stub = pb_grpc.CentrifugoUniStreamStub(grpc.insecure_channel(target))
    try:
        for push in stub.Consume(pb.ConnectRequest(token=token), timeout=60):
            print(json.dumps(readable(json_format.MessageToDict(push, preserving_proto_field_name=True))), flush=True)
        print(json.dumps({"end": "OK"}), flush=True)
    except grpc.RpcError as e:
        print(json.dumps({"end": e.code().name}), flush=True)


if __name__ == "__main__":
    main()
