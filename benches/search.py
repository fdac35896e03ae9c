"""SearchProfiles through `sluice serve` on a domain of the canonical file's
profiles: each query signed first (botocore's SigV4), then timed alone from
sending it to reading the whole answer, on one kept-alive connection, so the
figure is the server's answer and the loopback, not the client's Python.

Draws QUERIES rows at random from the input file and searches by every key
the mapping fills: _email, _phone, _account, _fullName, the UniqueKey's name
(Email) and _profileId (of the profiles the e-mail queries found), plus an
AND of two keys. Prints p50 / p99 / max per key and over all, and how many
queries of each key found nothing (a row that failed, or whose key a later
row of the file took over, finds nothing or another profile).
"""

import argparse
import csv
import http.client
import json
import os
import random
import time
import urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from serving import Server


def sample_rows(path, n, seed):
    """n rows drawn at random offsets of the file (each the line after a
    random byte offset), parsed as CSV with the header's names."""
    rng = random.Random(seed)
    with open(path, "rb") as f:
        header = next(csv.reader([f.readline().decode()]))
        f.seek(0, 2)
        size = f.tell()
        rows = []
        while len(rows) < n:
            f.seek(rng.randrange(size))
            f.readline()
            line = f.readline().decode("utf-8", "replace")
            if not line or '"' in line:  # skip quoted rows: a line may not be a row
                continue
            values = next(csv.reader([line]))
            if len(values) == len(header):
                rows.append(dict(zip(header, values)))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--domain", default="customers")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300)
    args = ap.parse_args()

    # The server's request log to a file, as a server's would go.
    with open(os.path.join(args.data, "search-bench.log"), "w") as log:
        server = Server(args.bin, args.data, stderr=log)
        try:
            run(server, args)
        finally:
            server.stop()


def run(server, args):
    url = urllib.parse.urlparse(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    creds = Credentials(server.key, server.secret)
    path = "/domains/%s/profiles/search" % args.domain

    def ask(body):
        req = AWSRequest(method="POST", url=server.url + path, data=json.dumps(body),
                         headers={"Content-Type": "application/json"})
        SigV4Auth(creds, "profile", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
        t0 = time.perf_counter()
        conn.request("POST", path, body=req.body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise SystemExit("search answered %d: %s" % (r.status, data[:300]))
        return dt, json.loads(data)

    rows = sample_rows(args.file, args.queries + args.warmup, 7)
    queries = []
    for i, row in enumerate(rows):
        full = " ".join(p for p in (row["first_name"], row["last_name"]) if p)
        kind = ["_email", "Email", "_phone", "_account", "_fullName", "AND"][i % 6]
        if kind in ("_email", "Email"):
            q = {"KeyName": kind, "Values": [row["email"]]}
        elif kind == "_phone":
            q = {"KeyName": "_phone", "Values": [row["phone"]]}
        elif kind == "_account":
            q = {"KeyName": "_account", "Values": [row["customer_id"]]}
        elif kind == "_fullName":
            q = {"KeyName": "_fullName", "Values": [full]}
        else:
            q = {"KeyName": "_fullName", "Values": [full], "LogicalOperator": "AND",
                 "AdditionalSearchKeys": [{"KeyName": "_account",
                                           "Values": [row["customer_id"]]}]}
        queries.append((kind, row, q))

    times = {}
    missed = {}
    ids = []
    for n, (kind, row, q) in enumerate(queries):
        dt, got = ask(q)
        if n < args.warmup:
            continue
        times.setdefault(kind, []).append(dt)
        items = got.get("Items", [])
        if kind in ("_email", "Email"):
            if items:
                ids.append(items[0]["ProfileId"])
        if not items:
            missed[kind] = missed.get(kind, 0) + 1
    for pid in ids[: len(ids) // 2]:
        dt, got = ask({"KeyName": "_profileId", "Values": [pid]})
        times.setdefault("_profileId", []).append(dt)
        if not got.get("Items"):
            missed["_profileId"] = missed.get("_profileId", 0) + 1

    def line(name, ts):
        ts = sorted(ts)
        p = lambda q: ts[min(len(ts) - 1, int(q * len(ts)))] * 1000
        print("   %-11s %5d queries  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms" % (
            name, len(ts), p(0.50), p(0.99), ts[-1] * 1000))

    print("== SearchProfiles through sluice serve (%d warm-up queries not counted)"
          % args.warmup)
    for k in sorted(times):
        line(k, times[k])
    line("all", [t for ts in times.values() for t in ts])
    print("   queries that found nothing, by key: %s" % (missed or "none"))


if __name__ == "__main__":
    main()
