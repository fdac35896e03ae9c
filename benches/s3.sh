#!/usr/bin/env bash
# S3 on the server's port (issue 19): `aws s3 cp` of the canonical 1 GiB
# file into a bucket of `sluice serve` and back, both multipart. Prints for
# each direction the wall time and the server's own CPU seconds per GiB
# moved (user + system of the serve process, read from /proc before and
# after, so the client's speed does not blur it), and the server's peak
# resident memory over the whole run (VmHWM).
#
# Targets: peak server memory <= 256 MiB; <= 2 CPU-seconds per GiB moved.
# Each direction runs twice (see below): compare the second passes.
#
# Usage: benches/s3.sh   (ROWS, SEED, DATA_DIR as benches/common.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=""
# shellcheck source=benches/common.sh
. benches/common.sh
. tests/boto3/venv.sh   # the aws CLI the tests pin
AWS="$VENV/bin/aws"

WORK=$(mktemp -d /tmp/sluice-s3-bench.XXXXXX)
SERVE=""
cleanup() {
  [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/sluice" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do
  grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break
  sleep 0.1
done
URL=$(sed -n 's/.*listening on //p' "$WORK/serve.out" | head -1)
[ -n "$URL" ] || { cat "$WORK/serve.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="$URL" AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=$(sed -n 's/^aws_access_key_id = //p' "$WORK/data/credentials")
AWS_SECRET_ACCESS_KEY=$(sed -n 's/^aws_secret_access_key = //p' "$WORK/data/credentials")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

# The serve process's CPU seconds (user + system), from /proc.
cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$SERVE/stat"
}

SIZE=$(stat -c %s "$FILE")
GIB=$(awk -v s="$SIZE" 'BEGIN { printf "%.4f", s / 1073741824 }')
echo "input: $FILE ($SIZE bytes, $GIB GiB), server $URL, $(nproc) cores"
"$AWS" s3 mb s3://bench >/dev/null

printf '%-10s %9s %9s %13s\n' direction wall_s cpu_s cpu_s_per_GiB
measure() {
  local name=$1; shift
  local c0 c1 t0 t1
  c0=$(cpu); t0=$(date +%s.%N)
  "$AWS" s3 cp --only-show-errors "$@"
  t1=$(date +%s.%N); c1=$(cpu)
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v g="$GIB" \
    'BEGIN { printf "%-10s %9.1f %9.2f %13.2f\n", n, t1 - t0, c1 - c0, (c1 - c0) / g }'
}
# Twice each: the first pass also pays for the kernel's first touch of
# memory it never used before (on a fresh VM `dd` of 1 GiB to a file took
# 2.9 s of system time the first time and 0.25 s the second); the second
# is the steady state of a server that has run a while.
measure put "$FILE" s3://bench/customers.csv
measure put-again "$FILE" s3://bench/customers.csv
measure get s3://bench/customers.csv "$WORK/back.csv"
rm -f "$WORK/back.csv"
measure get-again s3://bench/customers.csv "$WORK/back.csv"

if cmp -s "$FILE" "$WORK/back.csv"; then
  echo "round trip: identical"
else
  echo "round trip: DIFFERENT" >&2
  exit 1
fi
# For scale, on the same machine in the same run: the CPU a plain `cp`
# spends writing the file through the page cache (on a VM that hands
# freed memory back to its host, first-touching fresh pages alone can
# cost seconds per GiB; local buckets write large objects with O_DIRECT).
"$TIME" -f "%U %S" -o "$WORK/cp.time" cp "$FILE" "$WORK/copy.csv"
awk -v g="$GIB" '{ printf "peer: cp of the file, %.2f CPU-s per GiB\n", ($1 + $2) / g }' "$WORK/cp.time"
rm -f "$WORK/copy.csv"
peak=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVE/status")
echo "server peak memory: ${peak} MiB (target <= 256 MiB)"
