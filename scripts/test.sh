#!/usr/bin/env bash
# Run every test of the workspace:
# - unit tests beside the code, integration tests in */tests (plaintext, tamper,
#   SIGKILL crash, migration; sync with a real server, faults, convergence), doc tests;
# - the sync server's suite a second time against PostgreSQL (the conformance run,
#   plus the two-server scale-out test), with Debian's PostgreSQL started here;
# - a smoke run of each benchmark on a small commune.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Workspace tests (SQLite backend)"
cargo test --workspace --locked

echo "== Sync server conformance suite against PostgreSQL"
pg_url=$(./scripts/postgres.sh | tail -1)
DOORSTEP_TEST_POSTGRES_URL="$pg_url" cargo test --locked -p doorstep-sync-server

echo "== Benchmark smoke runs (small commune, each bench once)"
DOORSTEP_BENCH_HOUSEHOLDS=200 cargo bench --locked -p doorstep-core --bench store --bench save_latency -- --test
DOORSTEP_BENCH_HOUSEHOLDS=200 DOORSTEP_BENCH_DEVICES=20 cargo bench --locked -p doorstep-sync-server --bench sync_load -- --test
