#!/usr/bin/env bash
# The store benchmark (issues 3 and 17): the canonical 1 GiB job written
# into a fresh data directory (every record created), then again over the
# same store (every record updated), and DuckDB doing the same job into a
# .duckdb file (benches/peers/duckdb_job.py), each $REPEAT times in turn in
# one run; prints every run, the medians and the ratio to DuckDB. Then the
# store's writer on its own (examples/store_writer.rs).
#
# Targets (issue 17, 2 cores): first run <= 15 s and >= 2x faster than
# DuckDB-to-file in the same run; second run <= 20 s; peak memory <= 1.5 GiB.
#
# Usage: benches/store.sh   (ROWS, SEED, REPEAT, DATA_DIR, STORE_DIR,
#                            WRITER_ROWS to change; WRITER_ROWS=0 skips it)
# The input file is made as benches/canonical.sh makes it; DuckDB comes from
# PyPI into target/bench-venv, pinned by benches/peers/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-3}
STORE_DIR=${STORE_DIR:-${DATA_DIR:-target/bench-data}/store}
BUILD="--example store_writer"
# shellcheck source=benches/common.sh
. benches/common.sh

VENV_DIR=${PEER_VENV:-target/bench-venv}
VENV_REQUIREMENTS=benches/peers/requirements.txt
# shellcheck source=tests/boto3/venv.sh
. tests/boto3/venv.sh
PEER_VENV=$VENV

# timed NAME CMD...: runs CMD, appends "NAME wall_s peak_kib" to $RESULTS;
# its output goes to $DATA_DIR/store-NAME.out (the last run's stays).
RESULTS=$(mktemp)
timed() {
  local name=$1 log
  shift
  log=$(mktemp)
  "$TIME" -f '%e %M' -o "$log" "$@" > "$DATA_DIR/store-$name.out"
  read -r wall rss < "$log"
  rm -f "$log"
  printf '   %-8s %7.2f s  peak %5.2f GiB\n' "$name" "$wall" "$(awk -v r="$rss" 'BEGIN {print r / 2^20}')"
  echo "$name $wall $rss" >> "$RESULTS"
}

for i in $(seq "$REPEAT"); do
  echo "== run $i of $REPEAT"
  rm -rf "$STORE_DIR"
  timed first "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" --data-dir "$STORE_DIR" --json
  timed second "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" --data-dir "$STORE_DIR" --json
  timed duckdb "$PEER_VENV/bin/python" benches/peers/duckdb_job.py "$FILE" "$DATA_DIR/peer.duckdb"
done
for run in first second; do
  python3 -c 'import json,sys; j=json.load(open(sys.argv[2])); print("last", sys.argv[1], "run: processed", j["TotalProcessed"], "created", j["CreatedRecords"], "updated", j["UpdatedRecords"], "duplicates", j["DuplicateRecords"], "failed", j["FailedRecords"])' \
    "$run" "$DATA_DIR/store-$run.out"
done
ls -l "$STORE_DIR/sluice.db" "$DATA_DIR/peer.duckdb"

echo "== medians of $REPEAT"
python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, wall, rss = line.split()
    runs.setdefault(name, []).append((float(wall), int(rss)))
med = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
peak = {k: max(r for _, r in v) / 2**20 for k, v in runs.items()}
for k in ("first", "second", "duckdb"):
    print(f"   {k:8} {med[k]:7.2f} s  peak {peak[k]:5.2f} GiB")
print(f"   duckdb / first: {med['duckdb'] / med['first']:.2f}x")
PY
rm -f "$RESULTS"

if [ "${WRITER_ROWS:-7644235}" != 0 ]; then
  echo "== the writer on its own"
  "$BIN/examples/store_writer" "$DATA_DIR/store-writer" "${WRITER_ROWS:-7644235}"
  rm -rf "$DATA_DIR/store-writer"
fi
