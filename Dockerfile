# Builds every vaxtrail binary once; each service runs the same image with its own command.
# Used by docker-compose.yml and deploy/k8s. (The local stack needs no Docker: see deploy/local/.)

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/command-api target/release/signer-worker target/release/projectors \
       target/release/query-api target/release/vaxctl target/release/vaxtrail-registry /out/

FROM debian:bookworm-slim AS runtime
# fonts-noto-core and fonts-noto-cjk: the fonts the query API embeds in PDFs (every script a
# name or address may use; VAXTRAIL_PDF_FONTS).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl fonts-noto-core fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 vaxtrail \
 && mkdir -p /var/lib/vaxtrail/signer-state /var/lib/vaxtrail/kek \
 && chown vaxtrail /var/lib/vaxtrail/signer-state /var/lib/vaxtrail/kek \
 && chmod 0700 /var/lib/vaxtrail/kek
COPY --from=build /out/ /usr/local/bin/
USER vaxtrail
ENV VAXTRAIL_LOG_FORMAT=json
