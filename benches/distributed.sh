#!/usr/bin/env bash
# The distributed benchmark (issue 18): the canonical 1 GiB job, in one run,
#   1. by one process into SQLite (sluice ingest --data-dir),
#   2. on PostgreSQL with 1 `sluice worker`,
#   3. on PostgreSQL with 2 `sluice worker` processes,
# each into a fresh store (every record created), then once more over it
# (every record updated). For the PostgreSQL runs the job is queued with
# `sluice ingest --detach` and the workers split it into ranges; the script
# watches the store and prints when the last range was staged (read, parsed,
# deduped and COPYed) and when the merge ended, with the rates of each:
#   staged rows/s = rows read / staging time, and
#   merged rows/s = profiles written / merge time (several parts at once).
#
# Targets (issue 18, 2 cores): the job with 2 workers <= 60 s; staging
# >= 300,000 rows/s per PostgreSQL backend; the merge >= 100,000 created and
# >= 60,000 updated rows/s per backend.
#
# PostgreSQL is a throwaway cluster (tests/pg/cluster.sh, fsync off: an
# upper bound of what its disk allows); PG_OPTS adds server settings.
#
# Usage: benches/distributed.sh   (ROWS, SEED, DATA_DIR, WORKERS="1 2",
#                                  RANGE_SIZE to change)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=""
# shellcheck source=benches/common.sh
. benches/common.sh
# shellcheck source=tests/pg/cluster.sh
PG_SSL=${PG_SSL:-0} . tests/pg/cluster.sh   # plain, as the figures were measured
WORK=$(mktemp -d /tmp/sluice-distributed.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_cluster_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
ADMIN=$SLUICE_TEST_PG
BASE=${ADMIN%/*}
RANGE=${RANGE_SIZE:-64MiB}

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
q() { PGOPTIONS="--client-min-messages=warning" psql "$1" -tAq -c "$2"; }

echo "input: $FILE ($(du -h "$FILE" | cut -f1)), $(nproc) cores"
printf '%-22s %-8s %9s %9s %9s %12s %12s\n' run pass total_s stage_s merge_s staged_rows/s merged_rows/s

# SQLite, one process.
for pass in created updated; do
  start=$(now)
  "$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" --data-dir "$WORK/sqlite" --json \
    > "$WORK/sqlite-$pass.json" 2>/dev/null
  end=$(now)
  printf '%-22s %-8s %9.1f\n' "sqlite, 1 process" "$pass" "$(calc "$end - $start")"
done

for n in ${WORKERS:-1 2}; do
  db="bench_w$n"
  q "$ADMIN" "DROP DATABASE IF EXISTS $db" >/dev/null
  q "$ADMIN" "CREATE DATABASE $db" >/dev/null
  store="$BASE/$db"
  # Migrated and the domain made before the workers start.
  "$BIN/sluice" jobs list --store "$store" --data-dir "$WORK/w$n" > /dev/null
  PIDS=()
  for i in $(seq "$n"); do
    "$BIN/sluice" worker --store "$store" --data-dir "$WORK/w$n" --poll 0.2 \
      > "$WORK/worker-$n-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for pass in created updated; do
    start=$(now)
    job=$("$BIN/sluice" ingest "$FILE" --mapping "$MAPPING" --store "$store" --data-dir "$WORK/w$n" \
      --range-size "$RANGE" --detach 2>/dev/null)
    staged=""
    while :; do
      status=$(q "$store" "SELECT status FROM jobs WHERE id = '$job'")
      if [ -z "$staged" ]; then
        # Planned (total_pieces set with the ranges), and none open.
        IFS='|' read -r total open < <(q "$store" "SELECT j.total_pieces, (SELECT count(*) \
          FROM job_ranges r WHERE r.job_id = j.id AND r.state = 'open') FROM jobs j \
          WHERE j.id = '$job'")
        if [ "${total:-0}" -gt 0 ] && [ "${open:-1}" = 0 ]; then staged=$(now); fi
      fi
      case $status in QUEUED|RUNNING|CREATED) sleep 0.1 ;; *) break ;; esac
    done
    end=$(now)
    [ -n "$staged" ] || staged=$end
    IFS='|' read -r processed created updated < <(q "$store" \
      "SELECT processed, created, updated FROM jobs WHERE id = '$job'")
    stage=$(calc "$staged - $start")
    merge=$(calc "$end - $staged")
    printf '%-22s %-8s %9.1f %9.1f %9.1f %12.0f %12.0f   (%s %s: %s rows, %s created, %s updated)\n' \
      "postgresql, $n worker(s)" "$pass" "$(calc "$end - $start")" "$stage" "$merge" \
      "$(calc "$processed / $stage")" "$(calc "($created + $updated) / $merge")" \
      "$job" "$status" "$processed" "$created" "$updated"
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
done
