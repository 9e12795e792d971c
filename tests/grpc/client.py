"""A Centrifugo server API client in Python (grpcio), generated from natsgate's
proto/api.proto, driven by tests/grpc_api.rs. Stdlib and grpcio only.

    client.py transcript   run the scenario over GRPC and over the HTTP API and
                           print both transcripts as JSON: {"grpc": [...], "http": [...]}
    client.py publish CH DATA   publish DATA (JSON text) to CH over GRPC
    client.py disconnect USER CODE   disconnect USER with CODE over GRPC
    client.py refusals     wrong/no key, oversized, malformed, unknown method

Environment: GRPC_TARGET (host:port), GRPC_KEY, HTTP_API (http://host:port/api),
HTTP_KEY, SUFFIX (makes channel names unique per run), PRESENCE_CHANNEL (a
channel with presence where PRESENCE_USER has one connection subscribed),
MAX_RECEIVE (the server's largest request, for the oversized check).
The stubs (api_pb2, api_pb2_grpc) must be on PYTHONPATH.
"""

import base64
import json
import os
import sys
import urllib.request

import grpc
from google.protobuf import json_format

import api_pb2 as pb
import api_pb2_grpc as pb_grpc

TARGET = os.environ.get("GRPC_TARGET", "")
KEY = os.environ.get("GRPC_KEY", "")
HTTP_API = os.environ.get("HTTP_API", "")
HTTP_KEY = os.environ.get("HTTP_KEY", "")
SUFFIX = os.environ.get("SUFFIX", "")
PRESENCE = os.environ.get("PRESENCE_CHANNEL", "")
TIMEOUT = 10
# The first publication's offset in the running transcript.
OFFSET_BASE = [1]


def channel():
    """A channel to TARGET; TLS trusting GRPC_TLS_CA (a PEM file) when set."""
    ca = os.environ.get("GRPC_TLS_CA")
    if ca:
        with open(ca, "rb") as f:
            return grpc.secure_channel(TARGET, grpc.ssl_channel_credentials(root_certificates=f.read()))
    return grpc.insecure_channel(TARGET)


def stub(key=None):
    return pb_grpc.CentrifugoApiStub(channel()), [("authorization", "apikey " + (KEY if key is None else key))]


def strip(value):
    """Drops empty/zero values, as protobuf does, so JSON and GRPC compare."""
    if isinstance(value, dict):
        out = {k: strip(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", 0, False, {}, [])}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def from_grpc(message):
    """A GRPC message as JSON, `bytes` holding JSON text decoded back to JSON."""
    out = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return decode_data(out)


def decode_data(value):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("data", "conn_info", "chan_info") and isinstance(v, str):
                try:
                    v = json.loads(base64.b64decode(v))
                except ValueError:
                    pass
            out[k] = decode_data(v)
        return out
    if isinstance(value, list):
        return [decode_data(v) for v in value]
    return value


def normalise(value, epochs, clients, offsets=True):
    """Ids, times and per-run names replaced by stable placeholders."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "epoch" and isinstance(v, str) and v:
                v = epochs.setdefault(v, "<epoch%d>" % len(epochs))
            elif k == "client" and isinstance(v, str):
                v = clients.setdefault(v, "<client%d>" % len(clients))
            elif k in ("uid", "name", "version") and isinstance(v, str) and v:
                v = "<%s>" % k
            elif k == "uptime":
                continue  # seconds: 0 (so absent) or not, by timing
            elif k in ("num_clients", "num_users", "num_channels", "num_subs") and isinstance(v, (int, str)):
                v = int(v)
            elif k == "offset" and isinstance(v, (int, str)) and offsets:
                # natsgate's offsets are sequences of the namespace's stream
                # (README), so a run starts where the previous one ended.
                v = int(v) - OFFSET_BASE[0] + 1 if int(v) else 0
            elif k == "channels" and isinstance(v, dict):
                v = {name.replace(SUFFIX, ""): info for name, info in v.items()}
            out[k] = normalise(v, epochs, clients, offsets)
        return out
    if isinstance(value, list):
        return [normalise(v, epochs, clients, offsets) for v in value]
    if isinstance(value, str) and SUFFIX and SUFFIX in value:
        return value.replace(SUFFIX, "")
    return value


def presence_keys(result, clients):
    if isinstance(result, dict) and isinstance(result.get("presence"), dict):
        result["presence"] = {
            clients.setdefault(k, "<client%d>" % len(clients)): v for k, v in sorted(result["presence"].items())
        }
    return result


# The scenario: (method, params) with params in the HTTP API's JSON form; a
# `data` value is sent as JSON text in GRPC's bytes field. Channels get SUFFIX.
def steps():
    h = "hist:x" + SUFFIX
    since = "<since>"
    return [
        ("publish", {"channel": h, "data": {"n": 1}}),
        ("publish", {"channel": h, "b64data": base64.b64encode(b'{"n":2}').decode(), "tags": {"k": "v"}}),
        ("publish", {"channel": "nope:x", "data": {"n": 0}}),
        ("publish", {"channel": "", "data": {"n": 0}}),
        ("broadcast", {"channels": [h, "nope:y"], "data": {"n": 4}}),
        ("broadcast", {"channels": [], "data": {"n": 4}}),
        ("history", {"channel": h, "limit": 10}),
        ("history", {"channel": h, "limit": 10, "since": since, "reverse": True}),
        ("history", {"channel": h, "limit": 10, "since": {"offset": 1, "epoch": "no-such-epoch"}}),
        ("history", {"channel": h, "limit": 0}),
        ("history", {"channel": "nope:x", "limit": 1}),
        ("presence", {"channel": PRESENCE}),
        ("presence_stats", {"channel": PRESENCE}),
        ("presence", {"channel": h}),
        ("channels", {"pattern": "pres:*"}),
        ("info", {}),
        ("subscribe", {"user": "nobody" + SUFFIX, "channel": "pres:other"}),
        ("subscribe", {"user": "nobody" + SUFFIX, "channel": "nope:x"}),
        ("unsubscribe", {"user": "nobody" + SUFFIX, "channel": "pres:other"}),
        ("refresh", {"user": "nobody" + SUFFIX, "expire_at": 4102444800}),
        ("disconnect", {"user": "nobody" + SUFFIX, "disconnect": {"code": 4000, "reason": "bye"}}),
        ("batch", {"commands": [
            {"publish": {"channel": h, "data": {"n": 5}}},
            {"presence_stats": {"channel": PRESENCE}},
            {"publish": {"channel": "nope:x", "data": {"n": 0}}},
            {"history": {"channel": h, "limit": 1, "reverse": True}},
        ]}),
        ("batch", {"parallel": True, "commands": [
            {"presence_stats": {"channel": PRESENCE}},
            {"history": {"channel": "nope:x"}},
            {"info": {}},
        ]}),
        # b64data wins over data (Centrifugo's one handler for HTTP and GRPC).
        ("publish", {"channel": h, "data": {"n": 0}, "b64data": base64.b64encode(b'{"n":3}').decode()}),
        ("history", {"channel": h, "limit": 1, "reverse": True}),
        ("batch", {"commands": []}),
        ("history_remove", {"channel": h}),
        ("history", {"channel": h, "limit": 10}),
    ]


REQUESTS = {
    "publish": pb.PublishRequest, "broadcast": pb.BroadcastRequest, "subscribe": pb.SubscribeRequest,
    "unsubscribe": pb.UnsubscribeRequest, "disconnect": pb.DisconnectRequest, "presence": pb.PresenceRequest,
    "presence_stats": pb.PresenceStatsRequest, "history": pb.HistoryRequest,
    "history_remove": pb.HistoryRemoveRequest, "info": pb.InfoRequest, "refresh": pb.RefreshRequest,
    "channels": pb.ChannelsRequest, "batch": pb.BatchRequest,
}


def grpc_request(method, params):
    """The HTTP JSON params as the GRPC request (`data` to JSON text bytes)."""
    def convert(m, p):
        p = dict(p)
        if "data" in p:
            p["data"] = base64.b64encode(json.dumps(p["data"], separators=(",", ":")).encode()).decode()
        return p
    if method == "batch":
        params = dict(params)
        params["commands"] = [{m: convert(m, p) for m, p in c.items()} for c in params["commands"]]
    else:
        params = convert(method, params)
    return json_format.ParseDict(params, REQUESTS[method]())


def camel(method):
    return {"rpc": "RPC"}.get(method, "".join(w.capitalize() for w in method.split("_")))


def call_grpc(api, metadata, method, params):
    response = getattr(api, camel(method))(grpc_request(method, params), metadata=metadata, timeout=TIMEOUT)
    return from_grpc(response)


def call_http(method, params):
    request = urllib.request.Request(
        HTTP_API + "/" + method, data=json.dumps(params).encode(), method="POST",
        headers={"X-API-Key": HTTP_KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


def transcript(call):
    """Runs the scenario with `call(method, params)`; normalised replies."""
    epochs, clients, out = {}, {}, []
    position = None
    for method, params in steps():
        # The call as listed (`<since>` unresolved): runs differ in offsets.
        listed = normalise([method, params], {}, {}, offsets=False)
        if params.get("since") == "<since>":
            params = dict(params, since=position)
        reply = strip(call(method, params))
        if method == "publish" and "result" in reply and position is None:
            position = {"offset": reply["result"].get("offset", 0), "epoch": reply["result"].get("epoch", "")}
            OFFSET_BASE[0] = int(position["offset"])
        if "result" in reply:
            reply["result"] = presence_keys(reply["result"], clients)
        if method == "batch":
            for r in reply.get("replies", []):
                for v in r.values():
                    presence_keys(v, clients)
        out.append({"call": listed, "reply": normalise(reply, epochs, clients)})
    return out


def grpc_transcript():
    api, metadata = stub()
    return transcript(lambda m, p: call_grpc(api, metadata, m, p))


def main():
    what = sys.argv[1]
    if what == "transcript":
        result = {"grpc": grpc_transcript()}
        if HTTP_API:
            global SUFFIX
            grpc_suffix, SUFFIX = SUFFIX, SUFFIX + "h"
            result["http"] = transcript(call_http)
            SUFFIX = grpc_suffix
        print(json.dumps(result))
    elif what == "publish":
        api, metadata = stub()
        reply = call_grpc(api, metadata, "publish", {"channel": sys.argv[2], "data": json.loads(sys.argv[3])})
        print(json.dumps(reply))
        sys.exit(0 if "error" not in reply else 1)
    elif what == "disconnect":
        api, metadata = stub()
        params = {"user": sys.argv[2], "disconnect": {"code": int(sys.argv[3]), "reason": "grpc"}}
        reply = call_grpc(api, metadata, "disconnect", params)
        print(json.dumps(reply))
        sys.exit(0 if "error" not in reply else 1)
    elif what == "refusals":
        print(json.dumps(refusals()))
    elif what == "errors":
        print(json.dumps(errors()))
    else:
        sys.exit("unknown command " + what)


def status_of(f):
    try:
        reply = f()
        return {"ok": strip(from_grpc(reply))}
    except grpc.RpcError as e:
        out = {"status": e.code().name, "details": e.details()}
        for key, value in e.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                out["status_details"] = base64.b64encode(value).decode()
        return out


def refusals():
    """Each refusal, then a good call on the same channel showing nothing else
    was affected."""
    api, metadata = stub()
    raw = channel()
    out = {}
    info = pb.InfoRequest()
    out["wrong_key"] = status_of(lambda: stub("wrong")[0].Info(info, metadata=stub("wrong")[1], timeout=TIMEOUT))
    out["no_key"] = status_of(lambda: api.Info(info, timeout=TIMEOUT))
    big = pb.PublishRequest(channel="hist:big", data=b'"' + b"x" * int(os.environ.get("MAX_RECEIVE", "4194304")) + b'"')
    out["oversized"] = status_of(lambda: api.Publish(big, metadata=metadata, timeout=TIMEOUT))
    raw_publish = raw.unary_unary("/centrifugal.centrifugo.api.CentrifugoApi/Publish",
                                      request_serializer=lambda b: b, response_deserializer=pb.PublishResponse.FromString)
    # Field 1 (channel) says 100 bytes follow, then the message ends.
    out["malformed"] = status_of(lambda: raw_publish(b"\x0a\x64abc", metadata=metadata, timeout=TIMEOUT))
    unknown = raw.unary_unary("/centrifugal.centrifugo.api.CentrifugoApi/NoSuchMethod",
                                  request_serializer=lambda b: b, response_deserializer=lambda b: b)
    out["unknown_method"] = status_of(lambda: unknown(b"", metadata=metadata, timeout=TIMEOUT))
    out["unsupported_method"] = status_of(
        lambda: api.Connections(pb.ConnectionsRequest(), metadata=metadata, timeout=TIMEOUT))
    transport = metadata + [("x-centrifugo-error-mode", "transport")]
    out["transport_error"] = status_of(
        lambda: api.Publish(pb.PublishRequest(channel="nope:x", data=b"1"), metadata=transport, timeout=TIMEOUT))
    out["after"] = status_of(
        lambda: api.PresenceStats(pb.PresenceStatsRequest(channel=PRESENCE), metadata=metadata, timeout=TIMEOUT))
    return out


def errors():
    """Error answers as the server's error mode gives them, with no error-mode
    metadata: a method's error, a batch holding one, and a success."""
    api, metadata = stub()
    return {
        "publish": status_of(
            lambda: api.Publish(pb.PublishRequest(channel="nope:x", data=b"1"), metadata=metadata, timeout=TIMEOUT)),
        "history": status_of(lambda: api.History(
            pb.HistoryRequest(channel="hist:e" + SUFFIX, limit=1, since=pb.StreamPosition(offset=5, epoch="x")),
            metadata=metadata, timeout=TIMEOUT)),
        "batch": status_of(lambda: api.Batch(pb.BatchRequest(commands=[
            pb.Command(publish=pb.PublishRequest(channel="nope:x", data=b"1")),
            pb.Command(presence_stats=pb.PresenceStatsRequest(channel=PRESENCE)),
        ]), metadata=metadata, timeout=TIMEOUT)),
        "info": status_of(lambda: api.Info(pb.InfoRequest(), metadata=metadata, timeout=TIMEOUT)),
    }


if __name__ == "__main__":
    main()
