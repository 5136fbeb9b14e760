#!/usr/bin/env bash
# Try Doorstep on this machine: build the CLI, make a store with an officer
# profile, import a synthetic commune, then list, search, add a household from
# a CCCD card's QR image, and show a conflict between two devices.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${DOORSTEP_DEMO_HOUSEHOLDS:-500}
DEMO=target/demo
rm -rf "$DEMO" && mkdir -p "$DEMO"

echo "== Building the doorstep CLI and sync server (release)"
cargo build --release -q -p doorstep-cli -p doorstep-sync-server
bin="${CARGO_TARGET_DIR:-target}/release/doorstep"
server="${CARGO_TARGET_DIR:-target}/release/doorstep-sync-server"
PORT=${DOORSTEP_DEMO_PORT:-8787}
URL="http://127.0.0.1:$PORT"

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

echo "== Start the sync server on $URL (embedded SQLite: $DEMO/server.db)"
"$server" --db "$DEMO/server.db" serve --listen "127.0.0.1:$PORT" --admin-token demo-admin &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do python3 -c "import urllib.request; urllib.request.urlopen('$URL/healthz')" 2>/dev/null && break; sleep 0.1; done

echo "== Phone A enrols by scanning a one-time QR code, then syncs"
"$server" --db "$DEMO/server.db" enrol --area 01.001.00001 --url "$URL" --out "$DEMO/enrol-a.png"
$bin enrol "$DEMO/enrol-a.png"
$bin sync

echo "== Phone B (its own device key and officer) enrols and receives the commune"
B="--store $DEMO/phone-b.db --profile officer-b"
$bin $B create-profile officer-b
"$server" --db "$DEMO/server.db" enrol --area 01.001.00001 --url "$URL" --out "$DEMO/enrol-b.png"
$bin $B enrol "$DEMO/enrol-b.png"
$bin $B sync

echo "== Both phones change the same address offline, then sync"
$bin set 01.001.00001-000001 address "Số 252, Thôn Đông, xã Tân Lập"
$bin $B set 01.001.00001-000001 address "Số 251A, Thôn Đông, xã Tân Lập"
$bin sync && $bin $B sync && $bin sync
$bin conflicts 01.001.00001-000001
echo "== The server's conflict queue (operators' JSON API)"
python3 - "$URL" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/admin/conflicts", headers={"Authorization": "Bearer demo-admin"})
for c in json.load(urllib.request.urlopen(req)):
    print(f"#{c['id']} {c['doc_id']} {c['path']} [{c['status']}]")
    for v in c["values"]:
        print(f"    {v['value']!r} by {v['author']}")
    body = json.dumps({"value": "Số 251A, Thôn Đông, xã Tân Lập", "operator": "operator1"}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"{sys.argv[1]}/v1/admin/conflicts/{c['id']}/resolve", data=body, method="POST",
        headers={"Authorization": "Bearer demo-admin", "Content-Type": "application/json"}))
    print("    resolved by operator1")
PY
$bin sync && $bin $B sync
$bin $B conflicts 01.001.00001-000001

echo "== Storage"
$bin stats
echo "== Done. Phone A's store is $DEMO/phone-a.db; try: DOORSTEP_STORE=$DEMO/phone-a.db DOORSTEP_PIN=246810 $bin --help"
if [ -z "${DOORSTEP_DEMO_EXIT:-}" ] && [ -z "${CI:-}" ]; then
  echo "== The sync server keeps running on $URL (admin token demo-admin). Ctrl-C stops it."
  wait $server_pid
fi
