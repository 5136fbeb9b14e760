#!/usr/bin/env bash
# Builds libdoorstep_ffi.a for iOS devices and simulators and packs it, with the
# generated C header and module map, into DoorstepFFI.xcframework. Needs macOS with Xcode.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  cargo build --profile mobile --target "$t" -p doorstep-ffi --lib
done
scripts/generate-bindings.sh
headers=$(mktemp -d)
cp ios/Sources/Doorstep/DoorstepFFI.h "$headers/"
cp ios/Sources/Doorstep/DoorstepFFI.modulemap "$headers/module.modulemap"
sim=$(mktemp -d)
lipo -create target/aarch64-apple-ios-sim/mobile/libdoorstep_ffi.a target/x86_64-apple-ios/mobile/libdoorstep_ffi.a \
  -output "$sim/libdoorstep_ffi.a"
rm -rf ios/DoorstepFFI.xcframework
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/mobile/libdoorstep_ffi.a -headers "$headers" \
  -library "$sim/libdoorstep_ffi.a" -headers "$headers" \
  -output ios/DoorstepFFI.xcframework
echo "ios/DoorstepFFI.xcframework is ready"
