#!/usr/bin/env bash
# Run every test of the workspace:
# - unit tests beside the code, integration tests in */tests (plaintext, tamper,
#   SIGKILL crash, migration; sync with a real server, faults, convergence), doc tests;
# - the sync server's suite a second time against PostgreSQL (the conformance run,
#   plus the two-server scale-out test), with Debian's PostgreSQL started here;
# - the generated Kotlin bindings on the JVM (Maven);
# - the operator console in a real browser: playwright-core (npm) drives Debian's
#   headless chromium, both installed here; screenshots go to target/console-screenshots;
# - a smoke run of each benchmark on a small commune.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Workspace tests (SQLite backend)"
cargo test --workspace --locked

echo "== Sync server conformance suite against PostgreSQL"
pg_url=$(./scripts/postgres.sh | tail -1)
DOORSTEP_TEST_POSTGRES_URL="$pg_url" cargo test --locked -p doorstep-sync-server

echo "== Generated bindings are current; Kotlin bindings tested on the JVM against the native library and a real server"
./scripts/generate-bindings.sh --check
cargo build --locked -q -p doorstep-sync-server
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
command -v mvn >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null; }
(cd android/jvm-tests && mvn -q -B test -Ddoorstep.lib.dir="$target/debug" -Ddoorstep.server.bin="$target/debug/doorstep-sync-server")
cat android/jvm-tests/target/surefire-reports/*.txt | grep -E "Tests run" || true

echo "== Operator console in a real browser (playwright-core + Debian's chromium)"
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
cargo build --locked -q -p doorstep-cli -p doorstep-sync-server
(cd console-tests && npm ci --no-audit --no-fund --loglevel=error \
  && DOORSTEP_BIN_DIR="$target/debug" SCREENSHOT_DIR="$target/console-screenshots" npm test --silent)
ls "$target/console-screenshots"

echo "== Benchmark smoke runs (small commune, each bench once)"
DOORSTEP_BENCH_HOUSEHOLDS=200 cargo bench --locked -p doorstep-core --bench store --bench save_latency --bench photo_transfer -- --test
DOORSTEP_BENCH_HOUSEHOLDS=200 DOORSTEP_BENCH_DEVICES=20 cargo bench --locked -p doorstep-sync-server --bench sync_load -- --test
