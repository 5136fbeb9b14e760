#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 300), one after another,
# on its committed corpus, then minimises the corpus. Needs nightly Rust and
# `cargo install cargo-fuzz`. Prints one line of figures per target; a crash
# stops the run and leaves its input under fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
cargo +nightly fuzz build -s none
bin=fuzz/target/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
  mkdir -p "fuzz/artifacts/$t" "fuzz/corpus/$t"
  log="fuzz/artifacts/$t.log"
  "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 "fuzz/corpus/$t" > "$log" 2>&1 \
    || { echo "$t: CRASH, see $log and fuzz/artifacts/$t/"; exit 1; }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  cargo +nightly fuzz cmin -s none "$t" > /dev/null 2>&1
  echo "$t: ${seconds} s, $runs runs, $speed exec/s, coverage $cov, peak RSS $rss MB, $(ls "fuzz/corpus/$t" | wc -l) corpus inputs after cmin, no crash"
done
