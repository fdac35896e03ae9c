"""One profile job split across machines: `sluice serve --workers 0` and
three `sluice worker` processes on one PostgreSQL store, the job's input
three objects on moto's S3 server, read by ranges. One worker is killed with
SIGKILL while it holds a range; the job completes, and its profiles, counts
and Failures equal those of the same job run by one process into SQLite.

The input is made to test the cut: quoted fields with commas, quotes and
newlines inside, keys repeated across ranges and objects (the last row
wins), rows that fail (field counts, bad keys), CRLF line ends in one object.

Needs SLUICE_TEST_PG (tests/pg/cluster.sh starts one): skipped without it,
failed without it when SLUICE_REQUIRE_PG=1.

    SLUICE_TEST_PG=postgresql://postgres@127.0.0.1:5432/postgres \
        SLUICE_BIN=target/debug/sluice python tests/boto3/test_distributed.py
"""

import json
import os
import random
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import Moto, Server, drop_pg_database, new_pg_database, sluice_bin
from test_import_jobs import Cli
from test_workers import Worker, psql

ROWS_PER_OBJECT = 40_000
MAPPING = os.path.join(os.path.dirname(__file__), "..", "..", "testdata",
                       "customers.mapping.json")
HEADER = ("customer_id,first_name,last_name,email,phone,city,postal_code,lifetime_value,"
          "signup_date,notes")


def customers(path, seed, crlf):
    rnd = random.Random(seed)
    end = "\r\n" if crlf else "\n"
    with open(path, "w", newline="") as f:
        f.write(HEADER + end)
        for i in range(ROWS_PER_OBJECT):
            # 50,000 addresses over 120,000 rows: most repeat, in other
            # ranges and other objects.
            email = "User%d@Example.com" % rnd.randrange(50_000)
            notes = rnd.choice(["plain", '"said ""hi"", left"', '"two\nlines"', '"a,b"', ""])
            row = "%d,Ann,Lee,%s,+1 415 555 %04d,Paris,75001,%d.5,2020-01-02,%s" % (
                seed * 1_000_000 + i, email, i % 10_000, i, notes)
            if i % 4999 == 7:
                row += ",extra"              # too many fields
            elif i % 6007 == 11:
                row = row.replace(email, "no-at-sign")  # a key that is not an e-mail
            f.write(row + end)


def nested(targets, values):
    """A profile's fields from its targets and values, as the stores show them."""
    out = {}
    for target, value in zip(targets, values):
        at = out
        parts = target.split(".")
        for p in parts[:-1]:
            at = at.setdefault(p, {})
        at[parts[-1]] = value
    return out


@unittest.skipUnless(os.environ.get("SLUICE_TEST_PG") or os.environ.get("SLUICE_REQUIRE_PG") == "1",
                     "set SLUICE_TEST_PG to a PostgreSQL server (tests/pg/cluster.sh starts one)")
class Distributed(unittest.TestCase):
    def setUp(self):
        self.saved = os.environ.pop("SLUICE_BOTO3_PG", None)

    def tearDown(self):
        if self.saved is not None:
            os.environ["SLUICE_BOTO3_PG"] = self.saved

    def test_a_job_split_over_workers_one_killed_equals_one_process(self):
        admin = os.environ.get("SLUICE_TEST_PG")
        self.assertTrue(admin, "SLUICE_REQUIRE_PG=1 but SLUICE_TEST_PG names no server")
        moto = Moto()
        tmp = tempfile.mkdtemp(prefix="sluice-distributed-")
        try:
            env = moto.env()
            cli = Cli(os.path.join(tmp, "cli"), env=env)
            cli("mb", "s3://inbox")
            for n in range(3):
                path = os.path.join(tmp, "part-%d.csv" % n)
                customers(path, n + 1, crlf=(n == 1))
                cli("put", path, "s3://inbox/parts/")
            ingest = [sluice_bin(), "ingest", "s3://inbox/parts/", "--mapping", MAPPING,
                      "--piece-size", "64KiB", "--range-size", "256KiB"]
            run_env = dict(os.environ, **env)

            # The reference: one process, SQLite.
            ref_dir = os.path.join(tmp, "ref")
            out = subprocess.run(ingest + ["--data-dir", ref_dir, "--json"], check=True,
                                 capture_output=True, text=True, env=run_env)
            want = json.loads(out.stdout)
            db = sqlite3.connect(os.path.join(ref_dir, "sluice.db"))
            want_profiles = {k: json.loads(v) for k, v in
                             db.execute("SELECT profile_key, fields FROM live_profiles")}
            db.close()
            self.assertGreater(want["DuplicateRecords"], 0)
            self.assertGreater(want["FailedRecords"], 0)

            store = new_pg_database(admin)
            try:
                server = Server("--workers", "0", "--store", store, env=env)
                workers = []
                try:
                    workers = [Worker(store, server.data, env) for _ in range(3)]
                    job = subprocess.run(ingest + ["--store", store, "--detach"], check=True,
                                         capture_output=True, text=True,
                                         env=run_env).stdout.strip()
                    # Kill whichever worker holds a range, while it holds it.
                    deadline = time.time() + 120
                    while True:
                        holder = psql(store, "SELECT holder FROM job_ranges WHERE job_id = '%s' "
                                             "AND holder IS NOT NULL LIMIT 1" % job)
                        if holder:
                            break
                        self.assertLess(time.time(), deadline, "no range was leased")
                        time.sleep(0.02)
                    pid = int(holder.split("/")[2])
                    victim = next(w for w in workers if w.proc.pid == pid)
                    victim.proc.kill()
                    victim.proc.wait()
                    killed_range = psql(store, "SELECT count(*) FROM job_ranges WHERE job_id = "
                                               "'%s' AND holder = '%s'" % (job, holder))
                    deadline = time.time() + 300
                    while True:
                        status = psql(store, "SELECT status FROM jobs WHERE id = '%s'" % job)
                        if status not in ("QUEUED", "RUNNING"):
                            break
                        self.assertLess(time.time(), deadline, "the job did not finish")
                        time.sleep(0.2)
                    row = psql(store, "SELECT status, total_pieces, completed_pieces, "
                                      "failed_pieces, processed, created, updated, duplicates, "
                                      "failed, field_warnings, failures FROM jobs "
                                      "WHERE id = '%s'" % job).split("|")
                    got = dict(zip(["JobStatus", "TotalPieces", "CompletedPieces",
                                    "FailedPieces", "TotalProcessed", "CreatedRecords",
                                    "UpdatedRecords", "DuplicateRecords", "FailedRecords",
                                    "FieldWarnings", "Failures"], row))
                    self.assertEqual(got["JobStatus"], want["Status"])
                    for k in ("TotalProcessed", "CreatedRecords", "UpdatedRecords",
                              "DuplicateRecords", "FailedRecords", "FieldWarnings"):
                        self.assertEqual(int(got[k]), want[k], k)
                    self.assertEqual(json.loads(got["Failures"]), want["Failures"])
                    self.assertEqual(got["TotalPieces"], got["CompletedPieces"])
                    self.assertEqual(got["FailedPieces"], "0")
                    self.assertGreater(int(got["TotalPieces"]), 3)
                    # A process's runner and its helpers lease under one holder: one range or more.
                    self.assertGreaterEqual(int(killed_range), 1, "the killed worker held a range")
                    lines = subprocess.run(
                        ["psql", store, "-tAq", "-F", "\t", "-c",
                         "SELECT p.profile_key, s.targets, p.field_values FROM profiles p "
                         "JOIN profile_shapes s ON s.id = p.shape_id"],
                        check=True, capture_output=True, text=True).stdout.splitlines()
                    got_profiles = {}
                    for line in lines:
                        key, targets, values = line.split("\t")
                        got_profiles[key] = nested(json.loads(targets), json.loads(values))
                    self.assertEqual(len(got_profiles), len(want_profiles))
                    self.assertEqual(got_profiles, want_profiles)
                    # Its staging is gone with it.
                    self.assertEqual(psql(store, "SELECT count(*) FROM job_ranges"), "0")
                    self.assertEqual(psql(store, "SELECT count(*) FROM information_schema.tables "
                                                 "WHERE table_schema = 'sluice_stage'"), "0")
                finally:
                    for w in workers:
                        w.stop()
                    server.stop()
            finally:
                drop_pg_database(admin, store)
        finally:
            moto.stop()
            subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
