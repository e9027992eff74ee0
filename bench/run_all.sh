#!/usr/bin/env bash
# Every table of docs/BENCHMARKS.md, in one go. Run it on an otherwise idle
# machine (it takes 18 to 27 minutes on 2 vCPUs once the release builds exist); each section prints the
# Markdown rows the document quotes, with the command that made them.
# Usage: bench/run_all.sh > bench-results.md
set -euo pipefail
cd "$(dirname "$0")"
export AIRT_TEST_POSTGRES_URL="${AIRT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

section() { printf '\n## %s\n\n`%s` (started %s)\n\n' "$1" "$2" "$(date -u +%H:%M:%S)"; }

echo "# Benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(git rev-parse --short HEAD)"
(cd .. && cargo build --release -p registry-service -p policy-service -p workflow-service)
cargo build --release --bins

section "Physical floors" "cargo run --release --bin floors"
./target/release/floors

section "Policy engine, in process" "cargo bench --bench policy_engines"
cargo bench --bench policy_engines 2>/dev/null

section "gRPC Evaluate over loopback" "cargo run --release --bin evaluate-load"
./target/release/evaluate-load

section "Approval resume latency" "cargo run --release --bin approval-resume"
./target/release/approval-resume

section "MCP tools/list" "cargo run --release --bin mcp-list"
./target/release/mcp-list

section "Workflows against DBOS and Temporal" "bench/run_workflow_comparison.sh 1000"
./run_workflow_comparison.sh 1000

section "Observability overhead" "cargo run --release --bin observability-overhead -- 30"
./target/release/observability-overhead 30 2>/dev/null

section "Recovery after kill -9" "cargo run --release --bin recovery-time -- 1000 (and 10000)"
./target/release/recovery-time 1000 2>/dev/null
./target/release/recovery-time 1000 --postgres 2>/dev/null
./target/release/recovery-time 10000 2>/dev/null
./target/release/recovery-time 10000 --postgres 2>/dev/null

section "Memory and scale" "cargo run --release --bin scale -- 10000 1000"
./target/release/scale 10000 1000 2>/dev/null
./target/release/scale 10000 1000 --postgres 2>/dev/null

section "List pages with 1,000,000 workflows" "cargo run --release --bin list-scale -- 1000000"
./target/release/list-scale 1000000 2>/dev/null

section "Registry with 10,000 capabilities" "cargo run --release --bin registry-scale -- 10000"
./target/release/registry-scale 10000 2>/dev/null
./target/release/registry-scale 10000 --postgres 2>/dev/null
