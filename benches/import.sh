#!/usr/bin/env bash
# A Pinpoint import job through `sluice serve`: the first IMPORT_ROWS rows of
# the canonical file (common.sh) as an endpoint CSV (EMAIL address, user id,
# user attributes, location, a metric), put into a local bucket with
# `sluice bucket put`, imported with RegisterEndpoints and polled to the end
# with boto3. Prints the job's time and counters; then exports every endpoint
# with an export job (gzip NDJSON into a local bucket) and prints its time
# and the server's memory before and during it.
#
#   benches/import.sh                  # IMPORT_ROWS=1000000
#   IMPORT_ROWS=9560000 benches/import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=""
. benches/common.sh
. tests/boto3/venv.sh
"$VENV/bin/python" benches/import.py --bin "$BIN/sluice" --file "$FILE" \
  --rows "${IMPORT_ROWS:-1000000}" --out "$DATA_DIR"
