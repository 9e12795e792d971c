"""An application backend answering the shared_poll_refresh proxy both over
GRPC (grpcio, natsgate's proto/proxy.proto: CentrifugoProxy.SharedPollRefresh)
and over HTTP (POST /shared_poll_refresh, Centrifugo's JSON shape), with the
same decisions; driven by tests/shared_poll_api.rs.

Decisions by channel: a channel whose name contains "error" is answered with
the error {4000, "backend down"}; one containing "quiet" gets no items; one
containing "slow" is answered after
SLOW_SECONDS (past the proxy timeout); in a channel of the "spv" namespace
(versioned) every key has version 5 and data {"key": k, "v": 5}, sent only
when the asked version is lower; elsewhere (versionless) every key has data
{"key": k}. The key "gone" is answered as removed.

Prints "PORT <grpc port>" once both serve on 127.0.0.1 (HTTP on HTTP_PORT);
appends one JSON line per request to RECORD: {"transport": "grpc"|"http",
"body": {"channel", "items": [{"key", "version"?}]}, "metadata": [names]}
(version left out when 0, as Centrifugo's JSON leaves it out).
The stubs (proxy_pb2, proxy_pb2_grpc) must be on PYTHONPATH.
"""

import json
import os
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

import proxy_pb2 as pb
import proxy_pb2_grpc as pb_grpc

RECORD = os.environ["RECORD"]
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "2"))
LOCK = threading.Lock()


def record(transport, body, metadata):
    with LOCK:
        with open(RECORD, "a") as f:
            f.write(json.dumps({"transport": transport, "body": body, "metadata": sorted(metadata)}) + "\n")


def decide(channel, items):
    """(error, items): error is (code, message) or None; items are dicts
    with key, data (bytes), version, removed."""
    if "error" in channel:
        return (4000, "backend down"), []
    if "quiet" in channel:
        return None, []
    if "slow" in channel:
        time.sleep(SLOW_SECONDS)
    versioned = channel.startswith("spv:")
    out = []
    for item in items:
        key, asked = item["key"], item.get("version", 0)
        if key == "gone":
            out.append({"key": key, "removed": True})
        elif versioned:
            if asked < 5:
                out.append({"key": key, "data": json.dumps({"key": key, "v": 5}).encode(), "version": 5})
        else:
            out.append({"key": key, "data": json.dumps({"key": key}).encode()})
    return None, out


def normal_items(items):
    return [{"key": k, **({"version": v} if v else {})} for k, v in items]


class Backend(pb_grpc.CentrifugoProxyServicer):
    def SharedPollRefresh(self, request, context):
        items = normal_items([(i.key, i.version) for i in request.items])
        body = {"channel": request.channel, "items": items}
        names = [k for k, _ in context.invocation_metadata() if k != "user-agent"]
        record("grpc", body, names)
        error, out = decide(request.channel, items)
        if error:
            return pb.SharedPollRefreshResponse(error=pb.Error(code=error[0], message=error[1]))
        result = pb.SharedPollRefreshResult(items=[pb.SharedPollRefreshResultItem(**i) for i in out])
        return pb.SharedPollRefreshResponse(result=result)


class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = json.loads(self.rfile.read(length) or b"{}")
        items = normal_items([(i.get("key", ""), int(i.get("version", 0))) for i in raw.get("items", [])])
        body = {"channel": raw.get("channel", ""), "items": items}
        record("http", body, [])
        error, out = decide(body["channel"], items)
        if error:
            answer = {"error": {"code": error[0], "message": error[1]}}
        else:
            # Centrifugo's JSON shape embeds data as JSON.
            items = [{k: (json.loads(v) if k == "data" else v) for k, v in i.items()} for i in out]
            answer = {"result": {"items": items}}
        text = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # The proxy gave up on a slow answer and closed the connection.
        pass


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb_grpc.add_CentrifugoProxyServicer_to_server(Backend(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = Server(("127.0.0.1", int(os.environ["HTTP_PORT"])), Http)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"PORT {port}", flush=True)
    # Runs until the test kills it (or its stdin closes).
    sys.stdin.read()
    http.shutdown()
    server.stop(0)


if __name__ == "__main__":
    main()
