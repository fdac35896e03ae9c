#!/usr/bin/env bash
# SearchProfiles on a domain of the canonical file's profiles (9.56 M rows,
# 7.6 M profiles), through `sluice serve` (issue 20): the file ingested into
# a data directory (unless SEARCH_DIR already holds it), then
# benches/search.py: QUERIES searches by every key the mapping fills, each
# timed from sending to the whole answer on one kept-alive connection.
#
# Target: p99 <= 5 ms.
#
#   benches/search.sh                  # QUERIES=2000
#   SEARCH_DIR=target/bench-data/store benches/search.sh   # reuse benches/store.sh's store
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=""
# shellcheck source=benches/common.sh
. benches/common.sh
# shellcheck source=tests/boto3/venv.sh
. tests/boto3/venv.sh
SEARCH_DIR=${SEARCH_DIR:-$DATA_DIR/search}
if [ ! -s "$SEARCH_DIR/sluice.db" ]; then
  echo "== ingesting $FILE into $SEARCH_DIR" >&2
  "$TIME" -f 'ingest: %e s, peak %M KiB' "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" \
    --data-dir "$SEARCH_DIR" --json > /dev/null
fi
PYTHONPATH=benches "$VENV/bin/python" benches/search.py --bin "$BIN/sluice" \
  --data "$SEARCH_DIR" --file "$FILE" --queries "${QUERIES:-2000}"
