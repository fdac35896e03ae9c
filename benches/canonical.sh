#!/usr/bin/env bash
# The canonical benchmark: the 1 GiB customer file (9.56 M rows, seed 42),
# the full mapping, the file in page cache. Measures, in one run:
#
#   * the baseline: one thread of csv-core counting the records;
#   * `sluice ingest` with 1 and 2 threads (best of $REPEAT runs each),
#     wall time and peak RSS from /usr/bin/time -v.
#
# Targets (issue 2): 2 threads no slower than the baseline, 2 threads at
# least 1.8x faster than 1, peak RSS at most 1.5 GiB.
#
# Usage: benches/canonical.sh            (ROWS, SEED, REPEAT, DATA_DIR to change)
#        COMPARE_BIN=/path/to/other/sluice benches/canonical.sh
#   also measures another build (another commit) with 2 threads in the
#   same run, and prints how this one compares.
# The file comes from ../shared/bench/gen_customers.py when it exists (the
# project's reference generator), otherwise from the in-project generator of
# the same shape (examples/gen_customers.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-3}
BUILD="--example count_records"
# shellcheck source=benches/common.sh
. benches/common.sh

# best_of CMD...: runs CMD $REPEAT times; prints "best_wall_s max_rss_kib".
best_of() {
  local best="" rss=0
  for _ in $(seq "$REPEAT"); do
    local log
    log=$(mktemp)
    "$TIME" -v "$@" > /dev/null 2> "$log"
    local wall
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")
    local r
    r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    rm -f "$log"
    if [ -z "$best" ] || awk "BEGIN {exit !($wall < $best)}"; then best=$wall; fi
    if [ "$r" -gt "$rss" ]; then rss=$r; fi
  done
  echo "$best $rss"
}

read -r base base_rss < <(best_of "$BIN/examples/count_records" "$FILE")
read -r one one_rss < <(best_of "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" --threads 1 --json)
read -r two two_rss < <(best_of "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" --threads 2 --json)
if [ -n "${COMPARE_BIN:-}" ]; then
  read -r other other_rss < <(best_of "$COMPARE_BIN" ingest "$FILE" --mapping "$MAPPING" --threads 2 --json)
fi
summary=$("$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" --threads 2 --json 2>/dev/null |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(f"{k}={d[k]}" for k in ("TotalProcessed","UniqueRecords","DuplicateRecords","FailedRecords","TotalPieces")))')

size=$(stat -L -c %s "$FILE")
awk -v b="$base" -v o="$one" -v t="$two" -v r1="$one_rss" -v r2="$two_rss" -v s="$size" -v f="$FILE" -v sum="$summary" 'BEGIN {
  printf "file                      %s (%.2f GiB)\n", f, s / 2^30
  printf "result                    %s\n", sum
  printf "csv-core count, 1 thread  %6.2f s  %6.0f MB/s\n", b, s / b / 1e6
  printf "sluice, 1 thread          %6.2f s  %6.0f MB/s  peak RSS %.2f GiB\n", o, s / o / 1e6, r1 / 2^20
  printf "sluice, 2 threads         %6.2f s  %6.0f MB/s  peak RSS %.2f GiB\n", t, s / t / 1e6, r2 / 2^20
  printf "2 threads / baseline      %6.2f   (target <= 1.00)\n", t / b
  printf "speedup 1 -> 2 threads    %6.2f   (target >= 1.80)\n", o / t
  printf "peak RSS                  %6.2f GiB (target <= 1.50)\n", (r2 > r1 ? r2 : r1) / 2^20
}'
if [ -n "${COMPARE_BIN:-}" ]; then
  awk -v o="$other" -v t="$two" -v r="$other_rss" -v s="$size" -v b="$COMPARE_BIN" 'BEGIN {
    printf "%s, 2 threads\n                          %6.2f s  %6.0f MB/s  peak RSS %.2f GiB\n", b, o, s / o / 1e6, r / 2^20
    printf "this build / that one     %6.2f   (below 1: this one is faster)\n", t / o
  }'
fi
