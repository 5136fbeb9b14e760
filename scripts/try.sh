#!/usr/bin/env bash
# Try Doorstep on this machine: build the CLI, make a store with an officer
# profile, import a synthetic commune, then list, search, add a household from
# a CCCD card's QR image, and show a conflict between two devices.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${DOORSTEP_DEMO_HOUSEHOLDS:-500}
DEMO=target/demo
rm -rf "$DEMO" && mkdir -p "$DEMO"

echo "== Building the doorstep CLI (release)"
cargo build --release -q -p doorstep-cli
bin="${CARGO_TARGET_DIR:-target}/release/doorstep"

export DOORSTEP_STORE="$DEMO/phone-a.db" DOORSTEP_PROFILE=officer DOORSTEP_PIN=246810
echo "== Generating a synthetic commune of $N households"
python3 bench/gen_households.py "$N" > "$DEMO/commune.jsonl"

echo "== Creating an officer profile (Argon2id, 19 MiB) and importing"
$bin create-profile officer
$bin import "$DEMO/commune.jsonl"

echo "== First page of the household list"
$bin list --page-size 5

plain=$(python3 -c 'import json,sys,unicodedata; l=open(sys.argv[1]).readlines()[7]; n=json.loads(l)["members"][0]["full_name"]; print("".join(c for c in unicodedata.normalize("NFD", n) if not unicodedata.combining(c)).replace("Đ","D").replace("đ","d").lower())' "$DEMO/commune.jsonl")
echo "== Search by name without diacritics: '$plain'"
$bin search "$plain" | head -5

cccd=$(python3 -c 'import json,sys; l=open(sys.argv[1]).readline(); print(json.loads(l)["members"][0]["cccd"])' "$DEMO/commune.jsonl")
echo "== Search by CCCD $cccd"
$bin search "$cccd"

echo "== Add a household from a photo of a chip CCCD card's QR"
$bin qr-encode "001190012345|187654321|Nguyễn Thị Hồng Nhung|15031990|Nữ|Số 12, Thôn Đông, xã Tân Lập|20042021" --out "$DEMO/card.png"
$bin add --area 01.001.00001 --address "Số 12, Thôn Đông, xã Tân Lập" --card-image "$DEMO/card.png"

echo "== Validate a household"
$bin validate 01.001.00001-000003

echo "== A second phone (its own device key and officer) receives a household by hand-over"
export DOORSTEP_OTHER_PIN=246810
DOORSTEP_STORE="$DEMO/phone-b.db" DOORSTEP_PROFILE=officer-b $bin create-profile officer-b
DOORSTEP_STORE="$DEMO/phone-b.db" DOORSTEP_PROFILE=officer-b $bin merge-from "$DEMO/phone-a.db" 01.001.00001-000001
echo "== Both phones edit the address offline; phone A then merges phone B's copy"
$bin set 01.001.00001-000001 address "Số 252, Thôn Đông, xã Tân Lập"
DOORSTEP_STORE="$DEMO/phone-b.db" DOORSTEP_PROFILE=officer-b $bin set 01.001.00001-000001 address "Số 251A, Thôn Đông, xã Tân Lập"
$bin merge-from "$DEMO/phone-b.db" --other-profile officer-b 01.001.00001-000001
$bin conflicts 01.001.00001-000001
echo "== Resolve it"
$bin resolve 01.001.00001-000001 address "Số 251A, Thôn Đông, xã Tân Lập"

echo "== Storage"
$bin stats
echo "== Done. The store is $DEMO/phone-a.db; try: DOORSTEP_STORE=$DEMO/phone-a.db DOORSTEP_PIN=246810 $bin --help"
