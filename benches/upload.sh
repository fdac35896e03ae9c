#!/usr/bin/env bash
# The canonical file (1.09 GB, 9.56M rows) through `sluice serve` as a user
# sends it: CreateDomain, CreateUploadJob, GetUploadJobPath, one streamed
# SSE-C PUT (sealed to disk as it arrives), StartUploadJob (decrypted as it
# is ingested), polled to the end with boto3; against the same job from the
# local file (`sluice ingest --data-dir`), alternating, REPEAT times each.
# Prints every run, the medians and their ratio.
#
#   benches/upload.sh             # REPEAT=3; ROWS, SEED, DATA_DIR as in common.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=""
. benches/common.sh
. tests/boto3/venv.sh
"$VENV/bin/python" benches/upload.py --bin "$BIN/sluice" --file "$FILE" --mapping "$MAPPING" --repeat "${REPEAT:-3}"
