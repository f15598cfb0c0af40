# mirrorgate in a container: a release build in Rust's Debian image, run from a
# distroless image (glibc, no shell) as an unprivileged user.
#
#   docker build -t mirrorgate .
#   docker run --rm -v "$PWD/mirrorgate.toml:/etc/mirrorgate/mirrorgate.toml:ro" \
#       -p 19092:19092 -p 19100-19102:19100-19102 -p 8090:8090 mirrorgate
#
# The config must bind the proxy and admin listeners to 0.0.0.0 and advertise the name
# clients reach the container by (README, "Container image").

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# `cargo install` is what users run too; --locked builds exactly Cargo.lock.
RUN cargo install --locked --path . --root /out \
 && strip /out/bin/mirrorgate \
 && /out/bin/mirrorgate --version

# Same Debian release as the build image, so the binary finds the glibc it was linked
# against; nonroot is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/mirrorgate /usr/local/bin/mirrorgate
USER nonroot
# Bootstrap listener, broker listeners (broker_port_base + node id), admin.
EXPOSE 19092 19100-19102 8090
ENTRYPOINT ["/usr/local/bin/mirrorgate"]
CMD ["--log-format", "json", "run", "--config", "/etc/mirrorgate/mirrorgate.toml"]
