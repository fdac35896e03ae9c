#!/usr/bin/env bash
# The store benchmark (issue 3): the canonical 1 GiB job written into a fresh
# data directory, then again over the same store (every record an update),
# and the store's writer on its own (examples/store_writer.rs: 7,644,235
# sorted rows of the canonical size, created then updated).
#
# Targets: whole job with the store <= 15 s, second run <= 20 s (2 cores).
#
# Usage: benches/store.sh        (ROWS, SEED, DATA_DIR, STORE_DIR to change)
# The input file is made as benches/canonical.sh makes it.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-9560000}
SEED=${SEED:-42}
DATA_DIR=${DATA_DIR:-target/bench-data}
STORE_DIR=${STORE_DIR:-$DATA_DIR/store}
FILE="$DATA_DIR/customers-$ROWS-$SEED.csv"
MAPPING=testdata/customers.mapping.json
TIME=/usr/bin/time

if [ ! -x "$TIME" ]; then
  echo "benches/store.sh needs GNU time at $TIME (Debian: apt-get install time)" >&2
  exit 1
fi
cargo build --release --quiet --bin sluice --example store_writer --example gen_customers
BIN=${CARGO_TARGET_DIR:-target}/release

mkdir -p "$DATA_DIR"
if [ ! -s "$FILE" ]; then
  gen=../shared/bench/gen_customers.py
  if [ -f "$gen" ]; then
    python3 "$gen" --rows "$ROWS" --seed "$SEED" --out "$FILE"
  else
    "$BIN/examples/gen_customers" --rows "$ROWS" --seed "$SEED" --out "$FILE"
  fi
fi
cat "$FILE" > /dev/null   # into the page cache

echo "== parse only (no store)"
$TIME -f '   %e s wall, %M KiB peak' "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" > /dev/null

rm -rf "$STORE_DIR"
for run in first second; do
  echo "== $run run into $STORE_DIR"
  $TIME -f '   %e s wall, %M KiB peak' "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" \
    --data-dir "$STORE_DIR" --json > "$DATA_DIR/store-$run.json"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("   created", j["CreatedRecords"], "updated", j["UpdatedRecords"], "in", round(j["CompletedAt"]-j["StartedAt"],2), "s")' "$DATA_DIR/store-$run.json"
done
ls -l "$STORE_DIR/sluice.db"

echo "== the writer on its own"
"$BIN/examples/store_writer" "$DATA_DIR/store-writer" 7644235
rm -rf "$DATA_DIR/store-writer"
