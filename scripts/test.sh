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
# The test binaries built above, run again: `cargo test -p doorstep-sync-server`
# would resolve other features and rebuild the whole tree a second time.
pg_url=$(./scripts/postgres.sh | tail -1)
mapfile -t server_tests < <(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]
            and m["manifest_path"].endswith("/sync-server/Cargo.toml")):
        print(m["executable"])')
[ "${#server_tests[@]}" -gt 0 ] || { echo "no sync-server test binaries found"; exit 1; }
for t in "${server_tests[@]}"; do
  echo "-- $(basename "$t") on PostgreSQL"
  (cd sync-server && DOORSTEP_TEST_POSTGRES_URL="$pg_url" "$t" -q)
done

echo "== Generated bindings are current; Kotlin bindings tested on the JVM against the native library and a real server"
./scripts/generate-bindings.sh --check   # builds the workspace's binaries too
./scripts/jvm-tests.sh                    # the library again, with its test hooks
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"

echo "== Operator console in a real browser (playwright-core + Debian's chromium)"
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
(cd console-tests && npm ci --no-audit --no-fund --loglevel=error \
  && DOORSTEP_BIN_DIR="$target/debug" SCREENSHOT_DIR="$target/console-screenshots" npm test --silent)
ls "$target/console-screenshots"

echo "== Benchmark smoke runs (small commune, each bench once, debug build)"
# Built in the test profile from the artefacts above; the figures come from
# `cargo bench` (docs/PERFORMANCE.md), not from this run.
DOORSTEP_BENCH_HOUSEHOLDS=200 DOORSTEP_BENCH_DEVICES=20 cargo test --workspace --locked --bench '*' -- --test
