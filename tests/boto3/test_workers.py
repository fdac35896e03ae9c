"""`sluice worker` processes running the jobs of a `sluice serve` that runs
none (`--workers 0`), all on one PostgreSQL store, with the buckets on
moto's S3 server.

A Pinpoint import job is created through boto3; two workers wait for it;
the one that takes it is killed with SIGKILL in the middle; the other takes
it over once the lease lapses, and the job completes with the counts and
endpoints of the same job run by a single SQLite server.

Needs SLUICE_TEST_PG (a PostgreSQL URL whose user may create databases;
tests/pg/cluster.sh starts one): skipped without it, failed without it when
SLUICE_REQUIRE_PG=1.

    SLUICE_TEST_PG=postgresql://postgres@127.0.0.1:5432/postgres \
        SLUICE_BIN=target/debug/sluice python tests/boto3/test_workers.py
"""

import os
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import Moto, Server, drop_pg_database, new_pg_database, sluice_bin
from test_import_jobs import ROLE, Cli, wait

ROWS = 150_000


def endpoint_file(path):
    with open(path, "w") as f:
        f.write("ChannelType,Address,User.UserId,Attributes.Team\n")
        for i in range(ROWS):
            # 120,000 addresses: the last row of each wins; one row in 5,000
            # is refused.
            address = "user%d@example.com" % (i % 120_000) if i % 5000 else "bad-%d" % i
            f.write("EMAIL,%s,u%d,t%d\n" % (address, i % 7000, i % 13))


def import_all(server):
    """A new app on `server` and an import job of the bucket's endpoints
    into it: (client, app, job)."""
    pp = server.client(service="pinpoint")
    app = pp.create_app(CreateApplicationRequest={"Name": "a"})["ApplicationResponse"]["Id"]
    job = pp.create_import_job(ApplicationId=app, ImportJobRequest={
        "Format": "CSV", "S3Url": "s3://inbox/in/", "RegisterEndpoints": True,
        "RoleArn": ROLE})["ImportJobResponse"]["Id"]
    return pp, app, job


def psql(url, sql):
    out = subprocess.run(["psql", url, "-tAq", "-c", sql], check=True, capture_output=True,
                         text=True)
    return out.stdout.strip()


class Worker:
    def __init__(self, store, data, env):
        self.proc = subprocess.Popen(
            [sluice_bin(), "worker", "--store", store, "--data-dir", data, "--threads", "1",
             "--poll", "0.3", "--lease-ttl", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, **env))
        line = self.proc.stdout.readline()
        assert "running the jobs queued in" in line, line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=60) == 0
        self.proc.stdout.close()


@unittest.skipUnless(os.environ.get("SLUICE_TEST_PG") or os.environ.get("SLUICE_REQUIRE_PG") == "1",
                     "set SLUICE_TEST_PG to a PostgreSQL server (tests/pg/cluster.sh starts one)")
class Workers(unittest.TestCase):
    def setUp(self):
        # The servers here say their own store.
        self.saved = os.environ.pop("SLUICE_BOTO3_PG", None)

    def tearDown(self):
        if self.saved is not None:
            os.environ["SLUICE_BOTO3_PG"] = self.saved

    def test_a_killed_workers_job_is_finished_by_another(self):
        admin = os.environ.get("SLUICE_TEST_PG")
        self.assertTrue(admin, "SLUICE_REQUIRE_PG=1 but SLUICE_TEST_PG names no server")
        moto = Moto()
        tmp = tempfile.mkdtemp(prefix="sluice-workers-")
        try:
            src = os.path.join(tmp, "endpoints.csv")
            endpoint_file(src)
            env = moto.env()
            Cli(os.path.join(tmp, "cli"), env=env)("mb", "s3://inbox")
            Cli(os.path.join(tmp, "cli"), env=env)("put", src, "s3://inbox/in/")

            # The reference: one SQLite server runs the job itself.
            single = Server(env=env)
            try:
                pp, app, job = import_all(single)
                want, _ = wait(pp, app, job, timeout=300)
                db = sqlite3.connect(os.path.join(single.data, "sluice.db"))
                want_endpoints = sorted(db.execute(
                    "SELECT endpoint_id, address, user_id, fields FROM endpoints").fetchall())
                db.close()
            finally:
                single.stop()

            store = new_pg_database(admin)
            try:
                server = Server("--workers", "0", "--store", store, env=env)
                workers = []
                try:
                    pp, app, job = import_all(server)
                    # The server runs nothing: the job waits in the store.
                    time.sleep(1)
                    self.assertEqual(psql(store, "SELECT status FROM jobs WHERE id = '%s'" % job),
                                     "QUEUED")
                    workers = [Worker(store, server.data, env) for _ in range(2)]
                    # Whichever worker leases it is killed while it runs.
                    deadline = time.time() + 60
                    while True:
                        holder = psql(store, "SELECT holder FROM leases WHERE name = 'job/%s'"
                                      % job)
                        if holder:
                            break
                        self.assertLess(time.time(), deadline)
                        time.sleep(0.05)
                    pid = int(holder.split("/")[2])
                    victim = next(w for w in workers if w.proc.pid == pid)
                    time.sleep(0.5)
                    victim.proc.kill()
                    victim.proc.wait()
                    got, _ = wait(pp, app, job, timeout=300)
                    attempts = psql(store, "SELECT attempts FROM jobs WHERE id = '%s'" % job)
                    self.assertEqual(attempts, "2", "the job was taken over once")
                    for k in ("JobStatus", "TotalPieces", "CompletedPieces", "FailedPieces",
                              "TotalProcessed", "TotalFailures", "Failures"):
                        self.assertEqual(got[k], want[k], k)
                    rows = psql(store, "SELECT count(*) FROM endpoints")
                    self.assertEqual(int(rows), len(want_endpoints))
                    got_endpoints = sorted(
                        tuple(line.split("\t"))
                        for line in subprocess.run(
                            ["psql", store, "-tAq", "-F", "\t", "-c",
                             "SELECT endpoint_id, address, user_id, fields FROM endpoints"],
                            check=True, capture_output=True, text=True).stdout.splitlines())
                    self.assertEqual(got_endpoints, want_endpoints)
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
