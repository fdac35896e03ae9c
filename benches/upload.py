"""Times one upload job through `sluice serve` (see benches/upload.sh)."""

import argparse
import base64
import configparser
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import boto3

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--file", required=True)
ap.add_argument("--mapping", required=True)
args = ap.parse_args()

mapping = json.load(open(args.mapping))
size = os.path.getsize(args.file)
data = tempfile.mkdtemp(prefix="sluice-upload-bench-")
server = subprocess.Popen(
    [args.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data,
     "--max-upload", str(size + 1)], stdout=subprocess.PIPE, text=True)
try:
    url = server.stdout.readline().split("listening on ", 1)[1].strip()
    creds = configparser.ConfigParser()
    creds.read(os.path.join(data, "credentials"))
    cp = boto3.client("customer-profiles", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id=creds["default"]["aws_access_key_id"],
                      aws_secret_access_key=creds["default"]["aws_secret_access_key"])
    cp.create_domain(DomainName="bench", DefaultExpirationDays=14)
    job = cp.create_upload_job(DomainName="bench", DisplayName="bench",
                               Fields=mapping["Fields"], UniqueKey=mapping["UniqueKey"],
                               DataExpiry=mapping.get("DataExpiry", 14))["JobId"]
    path = cp.get_upload_job_path(DomainName="bench", JobId=job)
    token = path["ClientToken"]
    key = base64.b64decode(token)
    t0 = time.time()
    with open(args.file, "rb") as f:
        req = urllib.request.Request(path["Url"], data=f, method="PUT", headers={
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": token,
            "x-amz-server-side-encryption-customer-key-MD5":
                base64.b64encode(hashlib.md5(key).digest()).decode()})
        urllib.request.urlopen(req, timeout=3600).read()
    put_s = time.time() - t0
    t1 = time.time()
    cp.start_upload_job(DomainName="bench", JobId=job)
    while True:
        j = cp.get_upload_job(DomainName="bench", JobId=job)
        if j["Status"] not in ("CREATED", "IN_PROGRESS"):
            break
        time.sleep(0.2)
    job_s = time.time() - t1
    print("file          %.2f GB" % (size / 1e9))
    print("PUT (sealed)  %.1f s, %.0f MB/s" % (put_s, size / 1e6 / put_s))
    print("job           %.1f s (%s, %s)" % (job_s, j["Status"], j["ResultsSummary"]))
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(data, ignore_errors=True)
