# syntax=docker/dockerfile:1
# zkwatchdog and zkwatcher in one small image.
#
#   docker build -t zkwatchdog .
#   docker run --rm zkwatchdog zkwatcher --help
#   docker run --rm -e ZK_HOSTS=zk1:2181 zkwatchdog \
#       zkwatchdog run --id example@host -- sh -c 'while :; do echo alive >&2; sleep 5; done'
#
# The default command is `zkwatcher run --config /etc/zkwatcher/watcher.toml` (mount the file).
# tini is PID 1: it reaps orphans and passes SIGTERM on, so `docker stop` is a planned stop
# (the agent is stopped and removed from the registry, no alert).

# ---- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Every workspace member must be present for cargo to load the workspace (tests included).
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY tests tests
# Cache mounts keep the registry and the build between builds; the binaries are copied out of
# the cached target directory in the same step. Debug info is stripped from the image's copies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins -p zkwatchdog -p zkwatcher \
    && mkdir -p /out \
    && cp target/release/zkwatchdog target/release/zkwatcher /out/ \
    && strip --strip-debug /out/zkwatchdog /out/zkwatcher

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to SMTP relays and webhooks (rustls reads the system's roots).
# tini: a proper PID 1. /bin/sh (dash) comes with the base image, for agent commands.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/zkwatchdog /out/zkwatcher /usr/local/bin/
RUN groupadd --system --gid 10001 zkwatchdog \
    && useradd --system --uid 10001 --gid zkwatchdog --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin zkwatchdog \
    && mkdir -p /etc/zkwatcher
USER zkwatchdog:zkwatchdog
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["zkwatcher", "run", "--config", "/etc/zkwatcher/watcher.toml"]
