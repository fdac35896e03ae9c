#!/usr/bin/env bash
# Runs the boto3 / aws CLI end-to-end tests against a freshly built
# `sluice serve`. Makes (once) a virtualenv with the pinned clients.
#
#   tests/boto3/run.sh            # venv in ~/.cache/sluice-boto3-venv
#   SLUICE_VENV=/some/venv tests/boto3/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${SLUICE_VENV:-$HOME/.cache/sluice-boto3-venv}"
req=tests/boto3/requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi

cargo build --locked --bin sluice
target="${CARGO_TARGET_DIR:-target}"
export SLUICE_BIN="$target/debug/sluice"
export PATH="$venv/bin:$PATH"   # the aws CLI
"$venv/bin/python" tests/boto3/test_upload_jobs.py
