#!/usr/bin/env bash
# The Kotlin bindings on the JVM, against the native library and a real server.
# The library is built here with the `test-support` feature (test hooks: cheap key
# derivation, panic probes) and its Kotlin generated from it into target/jvm-kotlin: the
# shipped library and android/src/main/kotlin hold no test hook (scripts/generate-bindings.sh
# --check compares those). The whole workspace is built with the feature on doorstep-ffi
# alone, so no other crate is compiled again.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"
cargo build --locked -q --workspace --features doorstep-ffi/test-support
lib="$target/debug/libdoorstep_ffi.so"
[ -f "$lib" ] || lib="$target/debug/libdoorstep_ffi.dylib"
rm -rf "$target/jvm-kotlin"
"$target/debug/uniffi-bindgen" generate --library "$lib" --language kotlin --out-dir "$target/jvm-kotlin" --no-format
command -v mvn >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null; }
(cd android/jvm-tests && mvn -q -B test -Ddoorstep.lib.dir="$target/debug" -Ddoorstep.kotlin.dir="$target/jvm-kotlin" \
  -Ddoorstep.server.bin="$target/debug/doorstep-sync-server")
cat android/jvm-tests/target/surefire-reports/*.txt | grep -E "Tests run" || true
