#!/usr/bin/env bash
# Peak memory of whole jobs (issue 16's targets): a Pinpoint import of two
# 768 MiB endpoint CSV objects through `sluice serve`, with plain rows and
# with 12 attribute values a row (50,000 endpoints each; target <= 400 MiB
# whatever the attributes), and an Import/Export import of a device holding
# the 1 GiB canonical file (target <= 300 MiB). Peaks are ru_maxrss of the
# process that runs the job.
#
#   benches/memory.sh              # ENDPOINT_MIB=768
#   ENDPOINT_MIB=64 benches/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="--example gen_endpoints"
. benches/common.sh
. tests/boto3/venv.sh
MIB=${ENDPOINT_MIB:-768}
for attrs in 0 12; do
  files=()
  for seed in 1 2; do
    f="$DATA_DIR/endpoints-${MIB}MiB-${attrs}attrs-$seed.csv"
    if [ ! -s "$f" ]; then
      "$BIN/examples/gen_endpoints" --mib "$MIB" --endpoints 50000 \
        --attributes "$attrs" --seed "$seed" --out "$f"
    fi
    files+=("$f")
  done
  "$VENV/bin/python" benches/memory.py --bin "$BIN/sluice" import \
    --label "$attrs attributes a row" "${files[@]}"
done
"$VENV/bin/python" benches/memory.py --bin "$BIN/sluice" importexport --file "$FILE"
