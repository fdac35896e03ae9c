#!/usr/bin/env bash
# Runs the boto3 / aws CLI end-to-end tests against a freshly built
# `sluice serve`: Customer Profiles upload jobs, Pinpoint import jobs (also
# with buckets on moto's S3 server), Import/Export jobs, the bad-input
# matrix over HTTP, kill -9 and load. Makes (once) a virtualenv with the
# pinned clients and moto.
#
#   tests/boto3/run.sh            # venv in ~/.cache/sluice-boto3-venv
#   SLUICE_VENV=/some/venv tests/boto3/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

. tests/boto3/venv.sh

cargo build --locked --bin sluice
target="${CARGO_TARGET_DIR:-target}"
export SLUICE_BIN="$target/debug/sluice"
export PATH="$VENV/bin:$PATH"   # the aws CLI, moto_server
"$VENV/bin/python" tests/boto3/test_upload_jobs.py
"$VENV/bin/python" tests/boto3/test_import_jobs.py
"$VENV/bin/python" tests/boto3/test_importexport_jobs.py
"$VENV/bin/python" tests/boto3/test_bad_input.py
"$VENV/bin/python" tests/boto3/test_faults.py
