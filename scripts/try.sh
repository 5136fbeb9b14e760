#!/usr/bin/env bash
# Try Doorstep on this machine: build the CLI and the sync server, make a store
# with an officer profile, import a synthetic commune, list, search, add a
# household from a CCCD card's QR image, then start the sync server with its
# operator console and a demo district (preloaded communes, phones, a few
# conflicts and duplicates), walk the registry lifecycle (preload a commune,
# verify on a phone, export what changed, by command and by API, review, move a
# resident and transfer a household to another commune), sync two phones and make a
# conflict between them.
# Outside CI the server keeps running: open the console URL it prints.
# (No `cmd | head` here: with pipefail, a command still writing when head exits fails the script.)
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
$bin search "$plain" > "$DEMO/search.txt"; head -5 "$DEMO/search.txt"

cccd=$(python3 -c 'import json,sys; l=open(sys.argv[1]).readline(); print(json.loads(l)["members"][0]["cccd"])' "$DEMO/commune.jsonl")
echo "== Search by CCCD $cccd"
$bin search "$cccd"

echo "== Add a household from a photo of a chip CCCD card's QR"
$bin qr-encode "001190012345|187654321|Nguyễn Thị Hồng Nhung|15031990|Nữ|Số 12, Thôn Đông, xã Tân Lập|20042021" --out "$DEMO/card.png"
$bin add --area 01.001.00001 --address "Số 12, Thôn Đông, xã Tân Lập" --card-image "$DEMO/card.png"

echo "== Validate a household"
$bin validate 01.001.00001-000003

echo "== Console accounts: admin (admin) and operator1 (operator)"
ADMIN_PASSWORD=${DOORSTEP_ADMIN_PASSWORD:-doorstep-demo-admin}
OPERATOR_PASSWORD=${DOORSTEP_OPERATOR_PASSWORD:-doorstep-demo-operator}
DOORSTEP_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$server" --db "$DEMO/server.db" create-admin --username admin
DOORSTEP_OPERATOR_PASSWORD="$OPERATOR_PASSWORD" "$server" --db "$DEMO/server.db" add-operator --username operator1

echo "== Start the sync server on $URL (embedded SQLite: $DEMO/server.db, residents sealed under the key $DEMO/server.db.key) with a demo district 01.002"
# Other people than phone A's commune: another seed of the generator.
python3 bench/gen_households.py "$(( N < 300 ? N : 300 ))" 7 > "$DEMO/district.jsonl"
"$server" --db "$DEMO/server.db" serve --listen "127.0.0.1:$PORT" --insecure-http --admin-token demo-admin --demo "$DEMO/district.jsonl" \
  > "$DEMO/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do grep -q "^demo " "$DEMO/server.log" && break; sleep 0.2; done
cat "$DEMO/server.log"
grep -q "^demo ready" "$DEMO/server.log" || { echo "the demo did not seed"; exit 1; }

echo "== Preload: the registry's residents of commune 01.001.00002, imported by the server (one bad row goes to a report)"
python3 bench/gen_households.py 200 11 | sed 's/01\.001\.00001/01.001.00002/g' > "$DEMO/registry-00002.jsonl"
echo '{"household_id": "01.001.00002-bad", "area": "01.001.00002", "address": "x", "members": [{"member_id": "m0", "full_name": "Lê Văn Sai", "cccd": "12345"}]}' >> "$DEMO/registry-00002.jsonl"
"$server" --db "$DEMO/server.db" import --area 01.001.00002 "$DEMO/registry-00002.jsonl"
cat "$DEMO/registry-00002.jsonl.report.csv"
echo "== Importing the same file again changes nothing"
"$server" --db "$DEMO/server.db" import --area 01.001.00002 "$DEMO/registry-00002.jsonl"
cursor=$("$server" --db "$DEMO/server.db" export --area 01.001.00002 --out "$DEMO/export-all.jsonl")
echo "   exported $(wc -l < "$DEMO/export-all.jsonl") households; cursor $cursor"

echo "== Phone C of commune 01.001.00002 receives the preload, verifies one household at the door and corrects another"
C="--store $DEMO/phone-c.db --profile officer-c"
$bin $C create-profile officer-c
"$server" --db "$DEMO/server.db" enrol --area 01.001.00002 --url "$URL" --out "$DEMO/enrol-c.png"
$bin $C enrol "$DEMO/enrol-c.png"
$bin $C sync
$bin $C verify 01.001.00002-000004
$bin $C set 01.001.00002-000005 members/h000005-m0/phone 0912000555
$bin $C sync

echo "== Export since cursor $cursor: exactly the two households the phone changed"
"$server" --db "$DEMO/server.db" export --area 01.001.00002 --since "$cursor" --format csv --out "$DEMO/export-since.csv"
python3 -c 'import csv,sys; [print("  ", r["household_id"], r["member_id"], r["full_name"], r["resident_verification"] or "-", r["review_status"], sep="  ") for r in csv.DictReader(open(sys.argv[1]))]' "$DEMO/export-since.csv"

echo "== The registry's integration job reads the same through the export API, with an export token"
"$server" --db "$DEMO/server.db" export-token create --area 01.001 --label "demo registry job" > "$DEMO/export-token.txt"
token=$(grep -o 'dx_[0-9a-f]*' "$DEMO/export-token.txt")
python3 - "$URL" "$token" "$cursor" <<'PY'
import json, sys, urllib.request
url, token, since = sys.argv[1:4]
req = urllib.request.Request(f"{url}/v1/export/households?area=01.001.00002&since={since}", headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(req) as resp:
    rows = [json.loads(l) for l in resp.read().decode().splitlines() if l.strip()]
    print(f"   GET /v1/export/households: {len(rows)} households, next since {resp.headers['Doorstep-Next-Since']}")
for r in rows:
    print(f"   {r['household_id']}  review: {r['review_status']}  verified: {(r.get('verification') or {}).get('state', '-')}")
assert len(rows) == 2, rows
PY

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

echo "== Phone A photographs a house: stored sealed, synced apart from the record, thumbnail first"
python3 - "$DEMO/house.png" <<'PY'
import sys, zlib, struct
# A small PNG "photo" (a gradient), written without any imaging library.
w, h = 320, 240
rows = b"".join(b"\x00" + bytes(sum(((x * 255 // w, y * 255 // h, 128) for x in range(w)), ())) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY
$bin photo-add 01.001.00001-000001 "$DEMO/house.png"
$bin sync
$bin $B sync
$bin $B photo-get 01.001.00001-000001 --thumb --out "$DEMO/house-thumb.jpg"

echo "== No network: phone A hands its unsynced work to phone B as a sequence of QR codes"
$bin set 01.001.00001-000002 address "Số 77, Thôn Tây, xã Tân Lập"
$bin $B devices > "$DEMO/devices-b.txt"
phone_b=$(awk 'NR == 1 {print $3}' "$DEMO/devices-b.txt")
$bin bundle-export --to "$phone_b" --dirty-area 01.001.00001 --qr-dir "$DEMO/frames" --out "$DEMO/a-to-b.bundle"
$bin $B bundle-import "$DEMO"/frames/*.png
$bin $B show 01.001.00001-000002 > "$DEMO/b-household.json"; head -3 "$DEMO/b-household.json"
echo "== Storage"
$bin stats
echo "== Phone A's store is $DEMO/phone-a.db; try: DOORSTEP_STORE=$DEMO/phone-a.db DOORSTEP_PIN=246810 $bin --help"
# A small client of the console (what an operator's browser does): log in, then GET or POST a page.
cat > "$DEMO/console.py" <<'PY'
import re, sys, urllib.parse, urllib.request
url, password, action = sys.argv[1], sys.argv[2], sys.argv[3]
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args): return None
web = urllib.request.build_opener(Stay)
def cookie(resp, name):
    return next(c.split(";")[0] for c in resp.headers.get_all("Set-Cookie") if c.startswith(name + "="))
form = web.open(url + "/console/login")
login_cookie = cookie(form, "doorstep_login")
token = re.search(r'name="csrf" value="([^"]+)"', form.read().decode()).group(1)
data = urllib.parse.urlencode({"username": "operator1", "password": password, "csrf": token}).encode()
try:
    web.open(urllib.request.Request(url + "/console/login", data, headers={"Cookie": login_cookie}))
except urllib.error.HTTPError as answer:  # the 303 after a good login
    session = cookie(answer, "doorstep_session")
def get(path):
    return web.open(urllib.request.Request(url + path, headers={"Cookie": session})).read().decode()
if action == "progress-csv":
    csv = get("/console/progress.csv")
    print(csv)
    assert csv.startswith("area,households"), csv[:200]
elif action == "review":
    household, decision, comment = sys.argv[4], sys.argv[5], (sys.argv[6] if len(sys.argv) > 6 else "")
    page = get("/console/households/" + household)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrf": csrf, "decision": decision, "comment": comment}).encode()
    try:
        web.open(urllib.request.Request(url + "/console/households/" + household + "/review", body, headers={"Cookie": session}))
    except urllib.error.HTTPError as answer:
        assert answer.code == 303, answer.code
    status = re.search(r'id="review-status">([^<]+)<', get("/console/households/" + household)).group(1)
    print(f"   operator1: {decision} {household} -> {status}")
elif action == "transfer":
    household, decision, note = sys.argv[4], sys.argv[5], sys.argv[6]
    page = get("/console/transfers")
    row = re.search(r'<tr data-request="[^"]+">(?:(?!</tr>).)*?/console/households/' + re.escape(household) + r'"(?:(?!</tr>).)*?action="(/console/transfers/\d+)"(?:(?!</tr>).)*?name="csrf" value="([^"]+)"', page, re.S)
    body = urllib.parse.urlencode({"csrf": row.group(2), "decision": decision, "note": note}).encode()
    try:
        web.open(urllib.request.Request(url + row.group(1), body, headers={"Cookie": session}))
    except urllib.error.HTTPError as answer:
        assert answer.code == 303, answer.code
    print(f"   operator1: {decision} the transfer of {household}")
PY

echo "== Review: operator1 returns 01.001.00002-000004 for correction with a comment (as the console's Review page does)"
python3 "$DEMO/console.py" "$URL" "$OPERATOR_PASSWORD" review 01.001.00002-000004 return "Số nhà chưa đúng · the house number is wrong"
echo "== Phone C sees it at its next sync, the officer fixes it, and it goes back to the operator, who approves it"
$bin $C sync
$bin $C returned
$bin $C set 01.001.00002-000004 address "Số 18A, Thôn Đông, xã Tân Lập"
$bin $C sync
python3 "$DEMO/console.py" "$URL" "$OPERATOR_PASSWORD" review 01.001.00002-000004 approve
$bin $C sync
$bin $C returned

echo "== Moves: phone C records a resident who moved into another household of its commune,"
echo "   and asks to transfer a household to commune 01.001.00001 (outside its own area)"
$bin $C move-resident 01.001.00002-000007 h000007-m1 --to 01.001.00002-000008 --relation other
$bin $C move 01.001.00002-000006 --to 01.001.00001 --reason "Cả hộ chuyển về xã Tân Lập"
$bin $C sync
$bin $C transfers
echo "== operator1 approves the transfer on the console's Transfers page; phone C lets the household go, phone A receives it whole"
python3 "$DEMO/console.py" "$URL" "$OPERATOR_PASSWORD" transfer 01.001.00002-000006 approve "Đã xác minh giấy tờ"
$bin $C sync
$bin $C show 01.001.00002-000006 2>/dev/null && { echo "phone C still holds the household"; exit 1; }
$bin sync
$bin show 01.001.00002-000006 | grep '"area_code"'

echo "== The console's progress report (CSV), fetched as an operator"
python3 "$DEMO/console.py" "$URL" "$OPERATOR_PASSWORD" progress-csv

echo
echo "== Review: $URL/console/review lists the households waiting for an operator (the five phone 1 verified in 01.002.00001);"
echo "   each household's page shows its verification, the decisions and the audit trail."
echo "== Operator console: $URL/console/"
echo "   admin / $ADMIN_PASSWORD   or   operator1 / $OPERATOR_PASSWORD   (demo accounts: local use only)"
if [ -z "${DOORSTEP_DEMO_EXIT:-}" ] && [ -z "${CI:-}" ]; then
  echo "== The sync server keeps running on $URL. Ctrl-C stops it."
  wait $server_pid
fi
