# discord-bridge image: build with `docker build -t discord-bridge .`
# Stage 1 compiles the release binary; stage 2 is a small runtime image
# (distroless, glibc only, CA certificates, no shell) running as non-root.

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Every workspace member's manifest and sources, so that cargo can load the
# workspace. The simulator (sim/) is not compiled without the `demo` feature,
# so the Discord payload corpus it embeds (fixtures/) is not copied.
COPY Cargo.toml Cargo.lock ./
COPY bridge bridge
COPY schemas schemas
COPY sim sim
COPY adapter adapter
COPY tests tests
COPY bench bench
RUN cargo build --release --locked -p discord-bridge --no-default-features \
    && cp target/release/discord-bridge /discord-bridge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /discord-bridge /usr/local/bin/discord-bridge
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/discord-bridge"]
CMD ["run"]
