"""`sluice serve` under faults and load.

- kill -9 while uploads stream in and while a job runs, then start again
  on the same data: every upload is whole (its job runs and counts every
  row) or absent (StartUploadJob says there is no file; no partial file is
  left), and the running job resumes and finishes with the exact counts.
- Load: many concurrent API calls and uploads (bounded in count and time)
  against small limits: every answer is a success or the throttling error
  (ThrottlingException 429, SlowDown 503), never anything else; every
  accepted upload is stored whole, every refused one is absent.

SLUICE_LOAD_SECONDS and SLUICE_LOAD_CLIENTS make the load longer or wider
(benches/load.sh runs it so and reports the figures); the defaults keep
the test short.
"""

import http.client
import json
import os
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server  # noqa: E402
from test_upload_jobs import sse_headers, wait  # noqa: E402

FIELDS = {
    "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress",
              "ContentType": "EMAIL_ADDRESS"},
    "Name": {"Source": "_source.name", "Target": "_profile.FirstName",
             "ContentType": "NAME"},
}


def rows(n, tag):
    return b"email,name\n" + b"".join(b"%s%d@x.co,N %d\n" % (tag, i, i) for i in range(n))


def stream_put(url, body, headers, chunk=64 * 1024, pause=0.0):
    """PUT `body` in chunks (pausing between them); (status, text), or
    (None, error) when the connection broke."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        c.putrequest("PUT", u.path + "?" + u.query, skip_accept_encoding=True)
        c.putheader("Content-Length", str(len(body)))
        for k, v in headers.items():
            c.putheader(k, v)
        c.endheaders()
        for i in range(0, len(body), chunk):
            c.send(body[i:i + chunk])
            if pause:
                time.sleep(pause)
        r = c.getresponse()
        return r.status, r.read().decode()
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        c.close()


class Faults(unittest.TestCase):
    def new_job(self, cp, name):
        return cp.create_upload_job(DomainName="d", DisplayName=name, Fields=FIELDS,
                                    UniqueKey="Email")["JobId"]

    def test_kill_9_during_uploads_and_a_job_then_restart(self):
        server = Server("--max-uploads", "16")
        cp = server.client()
        cp.create_domain(DomainName="d", DefaultExpirationDays=30)
        # A job with a big file, started: it will be running at the kill.
        big = self.new_job(cp, "big")
        path = cp.get_upload_job_path(DomainName="d", JobId=big)
        status, text = stream_put(path["Url"], rows(300_000, b"b"),
                                  sse_headers(path["ClientToken"]))
        self.assertEqual(status, 200, text)
        # Uploads streaming slowly when the kill comes.
        uploads, results = [], {}
        for n in range(6):
            job = self.new_job(cp, "up%d" % n)
            p = cp.get_upload_job_path(DomainName="d", JobId=job)
            uploads.append((job, p))

        # Each takes over a second (25 chunks, 50 ms apart): all are still
        # streaming when the kill comes, 0.3 s after the big job started.
        def go(job, p):
            results[job] = stream_put(p["Url"], rows(20_000, b"u"), sse_headers(p["ClientToken"]),
                                      chunk=16 * 1024, pause=0.05)
        threads = [threading.Thread(target=go, args=u) for u in uploads]
        for t in threads:
            t.start()
        cp.start_upload_job(DomainName="d", JobId=big)
        deadline = time.time() + 30
        while cp.get_upload_job(DomainName="d", JobId=big)["Status"] == "CREATED":
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        time.sleep(0.3)
        server.kill()
        for t in threads:
            t.join()
        self.assertTrue(any(r[0] is None for r in results.values()), results)

        again = Server("--max-uploads", "16", dir=server.dir)
        try:
            cp = again.client()
            # No partial upload is left on disk.
            left = os.listdir(os.path.join(again.data, "uploads"))
            self.assertFalse([f for f in left if ".part-" in f], left)
            # The job that was running resumes and counts every row once.
            done = wait(cp, "d", big, timeout=300)
            self.assertEqual(done["Status"], "SUCCEEDED", done)
            self.assertEqual(done["ResultsSummary"]["CreatedRecords"]
                             + done["ResultsSummary"]["UpdatedRecords"], 300_000, done)
            # Each upload is whole or absent.
            for job, _ in uploads:
                status, _ = results[job]
                try:
                    cp.start_upload_job(DomainName="d", JobId=job)
                except cp.exceptions.BadRequestException as e:
                    self.assertIn("has no uploaded file", str(e))
                    self.assertNotEqual(status, 200, "an acknowledged upload was lost")
                    continue
                done = wait(cp, "d", job)
                self.assertEqual(done["Status"], "SUCCEEDED", done)
                self.assertEqual(done["ResultsSummary"]["FailedRecords"], 0, done)
                s = done["ResultsSummary"]
                self.assertEqual(s["CreatedRecords"] + s["UpdatedRecords"], 20_000, done)
        finally:
            again.stop()

    def test_load(self):
        seconds = float(os.environ.get("SLUICE_LOAD_SECONDS", "4"))
        clients = int(os.environ.get("SLUICE_LOAD_CLIENTS", "24"))
        server = Server("--max-requests", "4", "--max-uploads", "2")
        try:
            self.load(server, seconds, clients)
        finally:
            server.stop()

    def load(self, server, seconds, clients):
        cp = server.client()
        cp.create_domain(DomainName="d", DefaultExpirationDays=30)
        s3 = server.client(service="s3")
        s3.create_bucket(Bucket="load")
        api = {"ok": 0, "throttled": 0, "other": []}
        up = {"ok": [], "throttled": [], "other": []}
        objects = {"ok": [], "slowdown": 0}
        latencies = []
        lock = threading.Lock()
        stop_at = time.time() + seconds
        body = rows(2000, b"l")

        def caller(n):
            c = server.client()
            s3c = server.client(service="s3")
            i = 0
            while time.time() < stop_at:
                t = time.time()
                i += 1
                try:
                    if n % 3 == 1:
                        # S3 on the same port: a put and its read back.
                        key = "load/%d/%d" % (n, i)
                        try:
                            s3c.put_object(Bucket="load", Key=key, Body=body[:50_000])
                            with lock:
                                objects["ok"].append(key)
                        except s3c.exceptions.ClientError as e:
                            if e.response["Error"]["Code"] != "SlowDown":
                                raise
                            with lock:
                                objects["slowdown"] += 1
                    elif n % 3 == 0:
                        job = self.new_job(c, "load")
                        p = c.get_upload_job_path(DomainName="d", JobId=job)
                        status, text = stream_put(p["Url"], body, sse_headers(p["ClientToken"]))
                        kind = {200: "ok", 503: "throttled"}.get(status, "other")
                        with lock:
                            up[kind].append((job, status, text[:200]))
                    else:
                        c.list_upload_jobs(DomainName="d", MaxResults=5)
                        with lock:
                            api["ok"] += 1
                except c.exceptions.ThrottlingException:
                    with lock:
                        api["throttled"] += 1
                except Exception as e:  # noqa: BLE001 - every other answer is a failure
                    with lock:
                        api["other"].append(repr(e)[:200])
                with lock:
                    latencies.append(time.time() - t)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(api["other"], [])
        self.assertEqual(up["other"], [])
        self.assertGreater(api["ok"], 0)
        self.assertGreater(len(up["ok"]), 0)
        self.assertGreater(len(objects["ok"]), 0)
        # Every acknowledged object is there, whole.
        for key in objects["ok"][:50]:
            got = s3.get_object(Bucket="load", Key=key)["Body"].read()
            self.assertEqual(got, body[:50_000], key)
        # Accepted uploads are whole; refused ones absent.
        for job, _, _ in up["ok"][:20]:
            cp.start_upload_job(DomainName="d", JobId=job)
        for job, _, _ in up["ok"][:20]:
            done = wait(cp, "d", job, timeout=300)
            s = done["ResultsSummary"]
            self.assertEqual(s["CreatedRecords"] + s["UpdatedRecords"] + s["FailedRecords"],
                             2000, done)
        for job, _, _ in up["throttled"][:20]:
            with self.assertRaises(cp.exceptions.BadRequestException):
                cp.start_upload_job(DomainName="d", JobId=job)
        latencies.sort()
        figures = {
            "seconds": seconds, "clients": clients,
            "api_ok": api["ok"], "api_throttled": api["throttled"],
            "uploads_ok": len(up["ok"]), "uploads_throttled": len(up["throttled"]),
            "s3_puts_ok": len(objects["ok"]), "s3_slowdown": objects["slowdown"],
            "calls_per_second": round(len(latencies) / seconds, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        }
        print("load: " + json.dumps(figures), flush=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
