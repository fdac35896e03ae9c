"""Times a Customer Profiles upload job through `sluice serve` against the
same job from a local file, in the same run (see benches/upload.sh)."""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse

from serving import Server

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--file", required=True)
ap.add_argument("--mapping", required=True)
ap.add_argument("--repeat", type=int, default=3)
args = ap.parse_args()

mapping = json.load(open(args.mapping))
size = os.path.getsize(args.file)


def through_serve():
    """create -> path -> PUT -> start -> polled to the end: (PUT s, job s, summary)."""
    data = tempfile.mkdtemp(prefix="sluice-upload-bench-")
    server = Server(args.bin, data, "--max-upload", str(size + 1), stderr=subprocess.DEVNULL)
    try:
        cp = server.client("customer-profiles")
        t0 = time.time()
        cp.create_domain(DomainName="bench", DefaultExpirationDays=14)
        job = cp.create_upload_job(DomainName="bench", DisplayName="bench",
                                   Fields=mapping["Fields"], UniqueKey=mapping["UniqueKey"],
                                   DataExpiry=mapping.get("DataExpiry", 14))["JobId"]
        path = cp.get_upload_job_path(DomainName="bench", JobId=job)
        token = path["ClientToken"]
        key = base64.b64decode(token)
        t1 = time.time()
        # http.client sends a file 8 KiB at a time unless told otherwise;
        # 1 MiB at a time (as curl and the SDKs send, roughly) leaves the
        # machine's two cores to the server rather than to Python.
        put = urllib.parse.urlsplit(path["Url"])
        conn = http.client.HTTPConnection(put.hostname, put.port, timeout=3600,
                                          blocksize=1 << 20)
        with open(args.file, "rb") as f:
            conn.request("PUT", put.path + "?" + put.query, body=f, headers={
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
                "x-amz-server-side-encryption-customer-algorithm": "AES256",
                "x-amz-server-side-encryption-customer-key": token,
                "x-amz-server-side-encryption-customer-key-MD5":
                    base64.b64encode(hashlib.md5(key).digest()).decode()})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise SystemExit("PUT: %d %s" % (resp.status, body[:300]))
        put_s = time.time() - t1
        cp.start_upload_job(DomainName="bench", JobId=job)
        while True:
            j = cp.get_upload_job(DomainName="bench", JobId=job)
            if j["Status"] not in ("CREATED", "IN_PROGRESS"):
                break
            time.sleep(0.2)
        return put_s, time.time() - t0, "%s %s" % (j["Status"], j["ResultsSummary"])
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def local():
    """The same job from the local file: `sluice ingest --data-dir`."""
    data = tempfile.mkdtemp(prefix="sluice-upload-bench-")
    try:
        t0 = time.time()
        subprocess.run([args.bin, "ingest", args.file, "--mapping", args.mapping,
                        "--data-dir", data], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.time() - t0
    finally:
        shutil.rmtree(data, ignore_errors=True)


print("file %.2f GB, %d runs of each, alternating" % (size / 1e9, args.repeat))
served, puts, locals_ = [], [], []
for i in range(args.repeat):
    put_s, total_s, summary = through_serve()
    local_s = local()
    served.append(total_s)
    puts.append(put_s)
    locals_.append(local_s)
    print("run %d: through serve %.1f s (PUT %.1f s, %.0f MB/s; %s); local file %.1f s"
          % (i + 1, total_s, put_s, size / 1e6 / put_s, summary, local_s))
s, p, l = (statistics.median(v) for v in (served, puts, locals_))
print("median: through serve %.1f s (PUT %.1f s), local file %.1f s: %.2fx (target <= 1.15x)"
      % (s, p, l, s / l))
