# natsgate container image. No `# syntax=` line: it would make BuildKit pull
# a frontend image (docker/dockerfile) from a registry first; the cache mounts
# below work with BuildKit's built-in frontend (checked with Docker 20.10,
# which tests/docker.rs builds this file with, DOCKER_BUILDKIT=1). BuildKit is
# the default builder since Docker 23.
#
#   docker build -t natsgate:dev .
#   docker run --rm --stop-timeout 35 -p 8000:8000 -p 9000:9000 \
#     -e NATSGATE_NATS_URL=nats://nats:4222 \
#     -e NATSGATE_TOKEN_HMAC_SECRET_KEY=change-me natsgate:dev
#
# --stop-timeout: `docker stop` sends SIGTERM and, by default, SIGKILL 10 s
# later. natsgate drains its clients over NATSGATE_DRAIN_PERIOD (5 s by
# default, 20 s in the Helm chart) and exits at the latest
# NATSGATE_SHUTDOWN_TIMEOUT (30 s) after SIGTERM, so give Docker that timeout
# plus a margin (35 s; `stop_grace_period: 35s` in Compose).
#
# Stage 1 builds the release binary from the locked dependency set; stage 2 is
# a slim Debian runtime running as an unprivileged numeric user (so Kubernetes'
# runAsNonRoot can verify it). Both base images are build arguments, for a
# mirror or a pinned digest (tests/docker.rs passes local stand-ins, made by
# .ci/docker-images, because it cannot pull). The build context is the
# whitelist in .dockerignore.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# build.rs compiles proto/client.proto with protox (pure Rust): no protoc needed.
COPY . .
# The cache mounts keep the registry and target dir between builds (BuildKit);
# the binary is copied out because the target cache mount is not in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin natsgate \
 && cp target/release/natsgate /usr/local/bin/natsgate \
 && strip --strip-debug /usr/local/bin/natsgate \
 && /usr/local/bin/natsgate version

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: for tls:// NATS URLs. Nothing else is installed: the
# HEALTHCHECK below uses bash's /dev/tcp, and bash, grep and coreutils (also
# used by the chart's preStop `sleep`) are part of the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 natsgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin natsgate
COPY --from=builder /usr/local/bin/natsgate /usr/local/bin/natsgate

# In a container the gateway must listen on every interface (its own default
# is 127.0.0.1). 8000: WebSocket clients and the HTTP API. 9000: /metrics,
# /health and /ready (internal port).
ENV NATSGATE_ADDRESS=0.0.0.0 \
    NATSGATE_PORT=8000 \
    NATSGATE_INTERNAL_PORT=9000 \
    NATSGATE_LOG_FORMAT=json
EXPOSE 8000 9000

USER 10001:10001

# GET /health on the internal port over bash's /dev/tcp; healthy on HTTP 200.
# (Kubernetes ignores HEALTHCHECK; the Helm chart uses its own probes.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${NATSGATE_INTERNAL_PORT:-${NATSGATE_PORT:-8000}} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM starts the drain (clients get 3001 spread over NATSGATE_DRAIN_PERIOD);
# the process exits within NATSGATE_SHUTDOWN_TIMEOUT: run with --stop-timeout
# longer than that (see the top of this file), as the chart's grace period is.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/natsgate"]
CMD ["serve"]
