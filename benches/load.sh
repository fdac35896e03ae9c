#!/usr/bin/env bash
# Load on `sluice serve` (release build): concurrent API calls and uploads
# against --max-requests 4 / --max-uploads 2, for SECONDS with CLIENTS
# threads, checking every answer is a success or the throttling error and
# every accepted upload is whole. Prints the figures as one JSON line.
#
#   benches/load.sh                 # 30 s, 64 clients
#   SECONDS_=60 CLIENTS=128 benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/boto3/venv.sh
cargo build --release --locked --bin sluice
# Absolute: the test runs from tests/boto3.
target="${CARGO_TARGET_DIR:-target}"
[ "${target#/}" != "$target" ] || target="$PWD/$target"
export SLUICE_BIN="$target/release/sluice"
export SLUICE_LOAD_SECONDS="${SECONDS_:-30}" SLUICE_LOAD_CLIENTS="${CLIENTS:-64}"
cd tests/boto3
"$VENV/bin/python" -m unittest -v test_faults.Faults.test_load 2>&1 | grep -aE 'load: |^OK|FAIL|Error'
