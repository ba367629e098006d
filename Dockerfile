# syntax=docker/dockerfile:1.7
# chatmesh: one binary, every part (`chatmesh up`, or `chatmesh serve <part>` per Deployment).
#   docker build -t chatmesh:dev .
#   docker run --rm -p 50051:50051 -p 8080:8080 -p 8081:8081 --read-only \
#     --tmpfs /tmp -v chatmesh-data:/var/lib/chatmesh chatmesh:dev up

# --- build: a release binary, no system protoc (protox) and no OpenSSL (rustls, aws-lc) ---
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p chatmesh-cli \
    && install -m 0755 target/release/chatmesh /chatmesh \
    && mkdir -p /data

# --- runtime: glibc and libgcc only, no shell, no package manager, uid 65532 ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /chatmesh /usr/local/bin/chatmesh
# Listening on every interface, data under the volume; Kubernetes mounts its own config here.
COPY config/container.toml /etc/chatmesh/chatmesh.toml
# The data dir (embedded stores, signing keys) is the only path written besides /tmp, so the
# root filesystem can be mounted read-only.
COPY --from=build --chown=65532:65532 /data /var/lib/chatmesh
ENV CHATMESH_CONFIG=/etc/chatmesh/chatmesh.toml
VOLUME ["/var/lib/chatmesh"]
EXPOSE 50051 50052 8080 8081 9464
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/chatmesh"]
CMD ["up"]
