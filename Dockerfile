# syntax=docker/dockerfile:1.7
# chatmesh: one binary, every part (`chatmesh up`, or `chatmesh serve <part>` per Kubernetes
# workload).
#   docker build -t chatmesh:dev .
#   docker run --rm -p 50051:50051 -p 8080:8080 -p 8081:8081 --read-only \
#     --tmpfs /tmp -v chatmesh-data:/var/lib/chatmesh chatmesh:dev up
#
# The base images are pinned by digest: a rebuild gets the bytes that were reviewed, not
# whatever the tag points to that day. To move to a newer image, read the tag's digest with
# `docker buildx imagetools inspect <image:tag>` and replace it here in one reviewed change.

# --- tools: cargo-chef, which builds the dependencies apart from chatmesh's own code ---
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# --- plan: the dependency graph alone (recipe.json changes only with Cargo.toml / Cargo.lock) ---
FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- build: the dependencies in a layer of their own, reused until the recipe changes, then
# chatmesh; a release binary (profile.release: no debug info), no system protoc (protox) and
# no OpenSSL (rustls, aws-lc) ---
FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p chatmesh-cli --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p chatmesh-cli \
    && install -m 0755 target/release/chatmesh /chatmesh \
    && mkdir -p /data

# --- runtime: glibc and libgcc only, no shell, no package manager, uid 65532 ---
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
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
