# A local stand-in for the official rust:1-bookworm image, which cannot be
# pulled here: the slim Debian base, the C toolchain build scripts need
# (rust:1-bookworm has it through buildpack-deps), the host's Rust toolchain
# laid out as the official image lays it out (RUSTUP_HOME=/usr/local/rustup,
# CARGO_HOME=/usr/local/cargo, rustup proxies on PATH), and the host's extra
# CA certificates so cargo can reach the crate registry through this
# machine's egress proxy. Built by .ci/docker-images; never published.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make pkg-config binutils \
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rustup/ /usr/local/rustup/
COPY cargo-bin/ /usr/local/cargo/bin/
RUN rustup --version && rustc --version && cargo --version
