#!/usr/bin/env bash
# Builds doorstep-ffi and generates its Kotlin (android/) and Swift (ios/)
# bindings from the built library with the workspace's uniffi-bindgen.
# With --check, generates into a temporary folder and fails if the committed
# bindings differ.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
# The whole workspace, as the tests build it: one feature set, one build.
cargo build --locked -q --workspace
lib="$target/debug/libdoorstep_ffi.so"
[ -f "$lib" ] || lib="$target/debug/libdoorstep_ffi.dylib"

kotlin_out=android/src/main/kotlin
swift_out=ios/Sources/Doorstep
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  kotlin_out="$tmp/kotlin"
  swift_out="$tmp/swift"
fi
"$target/debug/uniffi-bindgen" generate --library "$lib" --language kotlin --out-dir "$kotlin_out" --no-format
"$target/debug/uniffi-bindgen" generate --library "$lib" --language swift --out-dir "$swift_out" --no-format

if [ "${1:-}" = "--check" ]; then
  diff -r "$kotlin_out" android/src/main/kotlin && diff -r "$swift_out" ios/Sources/Doorstep \
    || { echo "generated bindings are out of date: run scripts/generate-bindings.sh and commit"; exit 1; }
  echo "generated bindings are current"
fi
