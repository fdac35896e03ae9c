#!/usr/bin/env bash
# The store benchmark (issue 3): the canonical 1 GiB job written into a fresh
# data directory, then again over the same store (every record an update),
# and the store's writer on its own (examples/store_writer.rs: 7,644,235
# sorted rows of the canonical size, created then updated).
#
# Targets: whole job with the store <= 15 s, second run <= 20 s (2 cores).
#
# Usage: benches/store.sh   (ROWS, SEED, DATA_DIR, STORE_DIR, WRITER_ROWS to change)
# The input file is made as benches/canonical.sh makes it.
set -euo pipefail
cd "$(dirname "$0")/.."

STORE_DIR=${STORE_DIR:-${DATA_DIR:-target/bench-data}/store}
BUILD="--example store_writer"
# shellcheck source=benches/common.sh
. benches/common.sh

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
"$BIN/examples/store_writer" "$DATA_DIR/store-writer" "${WRITER_ROWS:-7644235}"
rm -rf "$DATA_DIR/store-writer"
