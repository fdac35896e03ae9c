#!/usr/bin/env bash
# An Import/Export round trip through `sluice serve`: a device folder made of
# the canonical file (common.sh) cut on line boundaries into IE_FILES files
# in 10 subfolders, plus the whole file, imported into a local bucket with
# `sluice importexport run`, then exported onto a fresh folder and compared
# byte for byte. Prints the time and throughput of each run.
#
#   benches/importexport.sh                  # ROWS=9560000, IE_FILES=200
#   ROWS=1000000 IE_FILES=2000 benches/importexport.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=""
. benches/common.sh
. tests/boto3/venv.sh
"$VENV/bin/python" benches/importexport.py --bin "$BIN/sluice" --file "$FILE" \
  --files "${IE_FILES:-200}"
