#!/usr/bin/env bash
# Run every test of the workspace: unit tests beside the code, integration
# tests in */tests (plaintext, tamper, SIGKILL crash, migration), doc tests,
# and a smoke run of each benchmark on a small commune.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked
echo "== Benchmark smoke run (200 households, each bench once)"
DOORSTEP_BENCH_HOUSEHOLDS=200 cargo bench --locked -p doorstep-core --bench store --bench save_latency -- --test
