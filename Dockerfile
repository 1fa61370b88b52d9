# syntax=docker/dockerfile:1
# d1-backup as a Docker container action: a release build of the binary, copied into a
# minimal runtime image with CA certificates. Root (no USER line): the runner's file-command
# files and workspace are only writable by root. Exec-form ENTRYPOINT straight to the binary
# (a shell would drop the hyphenated INPUT_* variables), so the binary is PID 1 and handles
# SIGINT/SIGTERM itself.

# Build stage: the toolchain the project is tested with.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so this layer is reused while only sources change.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY fake-d1/Cargo.toml ./fake-d1/Cargo.toml
RUN mkdir -p src fake-d1/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > fake-d1/src/main.rs && touch fake-d1/src/lib.rs \
 && cargo build --release --locked -p d1-backup \
 && rm -rf src fake-d1/src
COPY src ./src
COPY fake-d1/src ./fake-d1/src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked -p d1-backup \
 && cp target/release/d1-backup /d1-backup

# Runtime stage: glibc, CA certificates, nothing else. Pin by digest in releases.
FROM gcr.io/distroless/cc-debian12:latest
ARG VERSION=dev
ARG SOURCE=https://github.com/d1-backup/d1-backup
LABEL org.opencontainers.image.title="d1-backup" \
      org.opencontainers.image.description="Exact, streamed backups of Cloudflare D1 databases to R2 (or any S3 store)" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=build /d1-backup /d1-backup
ENTRYPOINT ["/d1-backup"]
