"""proxy_backend.py's backend served over TLS, for natsgate's GRPC-over-TLS
proxy test (tests/jwks.rs). Same output ("PORT <n>") and RECORD file; the
server certificate chain and key are the PEM files named by TLS_CERT and
TLS_KEY. The stubs (proxy_pb2, proxy_pb2_grpc) must be on PYTHONPATH;
proxy_backend is found beside this file (Python puts a script's directory
first on sys.path).
"""

import os
import sys
from concurrent import futures

import grpc

import proxy_backend
import proxy_pb2_grpc as pb_grpc


def main():
    with open(os.environ["TLS_KEY"], "rb") as f:
        key = f.read()
    with open(os.environ["TLS_CERT"], "rb") as f:
        cert = f.read()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_CentrifugoProxyServicer_to_server(proxy_backend.Backend(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    print(f"PORT {port}", flush=True)
    # Runs until the test kills it (or its stdin closes).
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
