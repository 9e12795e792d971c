# A local stand-in for the official nats image, which cannot be pulled here:
# Debian's nats-server on the slim Debian base, with the same entrypoint
# contract as nats:2-scratch (the arguments are nats-server's flags) and the
# client (4222), cluster (6222) and monitoring (8222) ports. Built by
# .ci/docker-images for the compose test; never published.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
CMD ["--jetstream"]
