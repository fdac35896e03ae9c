"""Times one Pinpoint import job through `sluice serve`, then an export job of every
endpoint it made (benches/import.sh)."""

import argparse
import csv
import os
import shutil
import subprocess
import tempfile
import time

from serving import Server

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--file", required=True)
ap.add_argument("--rows", type=int, required=True)
ap.add_argument("--out", required=True)
args = ap.parse_args()

endpoints = os.path.join(args.out, "endpoints-%d.csv" % args.rows)
if not os.path.exists(endpoints):
    with open(args.file, newline="") as src, open(endpoints, "w", newline="") as dst:
        r, w = csv.reader(src), csv.writer(dst)
        head = next(r)
        col = {n: i for i, n in enumerate(head)}
        w.writerow(["ChannelType", "Address", "User.UserId", "User.UserAttributes.FirstName",
                    "User.UserAttributes.LastName", "Location.City", "Location.PostalCode",
                    "Metrics.lifetime_value"])
        for n, row in enumerate(r):
            if n >= args.rows:
                break
            if len(row) != len(head):
                w.writerow(row)  # kept as it is: a row that must fail
                continue
            w.writerow(["EMAIL", row[col["email"]], row[col["customer_id"]],
                        row[col["first_name"]], row[col["last_name"]], row[col["city"]],
                        row[col["postal_code"]], row[col["lifetime_value"]]])
size = os.path.getsize(endpoints)

data = tempfile.mkdtemp(prefix="sluice-import-bench-")
def sluice(*a):
    subprocess.run([args.bin, *a, "--data-dir", data], check=True, stdout=subprocess.DEVNULL)
sluice("bucket", "mb", "s3://bench")
sluice("bucket", "put", endpoints, "s3://bench/in/")
server = Server(args.bin, data)
try:
    pp = server.client("pinpoint")
    app = pp.create_app(CreateApplicationRequest={"Name": "bench"})["ApplicationResponse"]["Id"]
    t0 = time.time()
    job = pp.create_import_job(ApplicationId=app, ImportJobRequest={
        "Format": "CSV", "S3Url": "s3://bench/in/", "RegisterEndpoints": True,
        "RoleArn": "arn:aws:iam::123456789012:role/Import"})["ImportJobResponse"]["Id"]
    phases = {}
    while True:
        j = pp.get_import_job(ApplicationId=app, JobId=job)["ImportJobResponse"]
        phases.setdefault(j["JobStatus"], time.time() - t0)
        if j["JobStatus"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.2)
    took = time.time() - t0
    print("file: %s (%d rows asked, %.1f MB)" % (endpoints, args.rows, size / 1e6))
    print("job: %s in %.1f s (%.1f MB/s); phases first seen at: %s" % (
        j["JobStatus"], took, size / 1e6 / took,
        ", ".join("%s %.1f s" % kv for kv in phases.items())))
    print("pieces %d (failed %d), processed %d, failures %d" % (
        j["TotalPieces"], j["FailedPieces"], j["TotalProcessed"], j["TotalFailures"]))

    # Then every endpoint out again: an export job, its time and the
    # server's memory while it runs (sampled), against before it; then a
    # dimensional segment's (the store reads every endpoint and keeps
    # those that pass), beside it.
    def rss_mib():
        with open("/proc/%d/status" % server.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0
    sluice("bucket", "mb", "s3://out")

    def export(what, **request):
        before = peak = rss_mib()
        t0 = time.time()
        job = pp.create_export_job(ApplicationId=app, ExportJobRequest=dict(
            S3UrlPrefix="s3://out/endpoints/",
            RoleArn="arn:aws:iam::123456789012:role/Export", **request))[
            "ExportJobResponse"]["Id"]
        while True:
            e = pp.get_export_job(ApplicationId=app, JobId=job)["ExportJobResponse"]
            peak = max(peak, rss_mib())
            if e["JobStatus"] in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.05)
        took = time.time() - t0
        out = os.path.join(data, "buckets", "out", "endpoints", job)
        written = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        print("%s: %s in %.2f s, %d endpoints in %d files (%.1f MB gzip); server RSS %.0f "
              "MiB before, %.0f MiB at most while it ran" % (
                  what, e["JobStatus"], took, e["TotalProcessed"], e["TotalPieces"],
                  written / 1e6, before, peak))

    export("export")
    seg = pp.create_segment(ApplicationId=app, WriteSegmentRequest={
        "Name": "valuable", "Dimensions": {
            "Metrics": {"lifetime_value": {"ComparisonOperator": "GREATER_THAN_OR_EQUAL",
                                           "Value": 500}},
            "UserAttributes": {"LastName": {"AttributeType": "CONTAINS",
                                            "Values": ["a", "e"]}}}})
    export("export of a dimensional segment",
           SegmentId=seg["SegmentResponse"]["Id"])
finally:
    server.stop(timeout=60)
    shutil.rmtree(data, ignore_errors=True)
