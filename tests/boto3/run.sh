#!/usr/bin/env bash
# Runs the boto3 / aws CLI end-to-end tests against a freshly built
# `sluice serve`: Customer Profiles upload jobs, Pinpoint import jobs (also
# with buckets on moto's S3 server), Import/Export jobs, the bad-input
# matrix over HTTP, kill -9 and load; with SLUICE_TEST_PG (a PostgreSQL
# server, see tests/pg/cluster.sh) all of them again on a PostgreSQL store.
# Makes (once) a virtualenv with the pinned clients and moto.
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
# S3 on the same port: boto3's S3 client and aws s3 mb/cp/ls/sync/rm/rb.
"$VENV/bin/python" tests/boto3/test_s3.py
# Accounts: keys of different accounts see only their own resources.
"$VENV/bin/python" tests/boto3/test_accounts.py
# Reading profiles back: SearchProfiles by every key, DeleteProfile.
"$VENV/bin/python" tests/boto3/test_search_profiles.py
# Pinpoint segments: dimensional ones and groups, exported; updated, deleted.
"$VENV/bin/python" tests/boto3/test_segments.py
# Again on a PostgreSQL store when there is a server to make databases on
# (.ci/run starts one): each server a new database of it.
if [ -n "${SLUICE_TEST_PG:-}" ]; then
  for t in test_upload_jobs test_search_profiles test_import_jobs test_importexport_jobs \
      test_segments test_bad_input test_faults; do
    echo "== $t on PostgreSQL"
    SLUICE_BOTO3_PG="$SLUICE_TEST_PG" "$VENV/bin/python" "tests/boto3/$t.py"
  done
  # sluice worker processes running a server's jobs; one killed mid-job.
  "$VENV/bin/python" tests/boto3/test_workers.py
  # One profile job split over three workers, one killed mid-range.
  "$VENV/bin/python" tests/boto3/test_distributed.py
elif [ "${SLUICE_REQUIRE_PG:-}" = 1 ]; then
  echo "SLUICE_REQUIRE_PG=1 but SLUICE_TEST_PG names no server" >&2
  exit 1
fi
