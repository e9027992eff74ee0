# One image, three services, the MCP gateway, the console and the CLI:
#   registry-service, policy-service, workflow-service, mcp-gateway, airt-console, airt
# Build: docker build -t airt .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# protoc is vendored (protoc-bin-vendored): nothing else to install.
# Only the six binaries: the test helpers (feature `testing`) stay out.
RUN cargo build --release --locked -p registry-service -p policy-service -p workflow-service \
      -p mcp-gateway -p airt-console -p airt-cli \
 && mkdir /out \
 && cp target/release/registry-service target/release/policy-service \
       target/release/workflow-service target/release/mcp-gateway target/release/airt-console \
       target/release/airt /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/airt --create-home airt
COPY --from=build /out/ /usr/local/bin/
USER airt
WORKDIR /var/lib/airt
ENV AIRT_LOG_FORMAT=json
EXPOSE 50051 50052 50053
# Each service answers `<binary> healthcheck` (grpc.health.v1 on its port).
CMD ["workflow-service", "--help"]
