# syntax=docker/dockerfile:1
# One image for every part of appscope-k8s:
#   /usr/bin/appscope-operator   node agent, controller, crdgen, copy-lib (init container)
#   /usr/bin/appscope-webhook    mutating admission webhook
#   /usr/bin/scope               CLI (also /usr/bin/kubectl-scope)
#   /usr/lib/appscope/libscope.so  the LD_PRELOAD library, linked for glibc 2.17 so it loads
#                                  into old distributions' processes too
# Build:  docker build -t appscope-k8s:dev .
# Runs as uid 65532 (non-root); the agent DaemonSet sets its own securityContext.

# Base images (override with --build-arg).
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------- builder
FROM ${RUST_IMAGE} AS builder
# Pinned cargo-zigbuild and zig (from PyPI) for the old-glibc libscope.so.
ARG CARGO_ZIGBUILD_VERSION=0.24.1
ARG ZIGLANG_VERSION=0.15.2
# The glibc version libscope.so is linked against.
ARG LIBSCOPE_GLIBC=2.17
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/zig \
 && /opt/zig/bin/pip install --no-cache-dir "cargo-zigbuild==${CARGO_ZIGBUILD_VERSION}" "ziglang==${ZIGLANG_VERSION}"
ENV PATH=/opt/zig/bin:${PATH}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p appscope-operator -p appscope-webhook -p appscope-cli \
 && cargo zigbuild --profile release-lib --locked -p preload-lib --lib --target "x86_64-unknown-linux-gnu.${LIBSCOPE_GLIBC}"
# Collect the artifacts in /out, laid out as in the runtime image.
RUN install -D -m 0755 target/release/appscope-operator /out/usr/bin/appscope-operator \
 && install -D -m 0755 target/release/appscope-webhook /out/usr/bin/appscope-webhook \
 && install -D -m 0755 target/release/scope /out/usr/bin/scope \
 && ln -s scope /out/usr/bin/kubectl-scope \
 && install -D -m 0644 target/x86_64-unknown-linux-gnu/release-lib/libscope.so /out/usr/lib/appscope/libscope.so

# ---------------------------------------------------------------- runtime
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="appscope-k8s" \
      org.opencontainers.image.description="AppScope for Kubernetes: libscope.so, webhook, operator and CLI" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://example.invalid/appscope-k8s"
COPY --from=builder /out/usr/bin/ /usr/bin/
COPY --from=builder /out/usr/lib/appscope/libscope.so /usr/lib/appscope/libscope.so
ENV APPSCOPE_LIB_SOURCE=/usr/lib/appscope/libscope.so
USER 65532:65532
# The chart sets `command:` per workload; the default runs the operator (see --help).
# The injected init container runs `appscope-operator copy-lib --to /appscope/lib`: no shell needed.
ENTRYPOINT ["/usr/bin/appscope-operator"]
CMD ["--help"]
