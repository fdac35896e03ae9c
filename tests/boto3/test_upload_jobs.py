"""Customer Profiles upload jobs against `sluice serve`, driven by boto3.

Runs the whole flow a user would: create a domain and an upload job, get the
signed upload URL and ClientToken, PUT a generated CSV (quoted newlines,
duplicates, bad rows) with the SSE-C headers, start the job, poll it to the
end and check ResultsSummary against counts worked out here; then a second
upload into the same domain. Then every way in that must be refused.

    SLUICE_BIN=target/debug/sluice python tests/boto3/test_upload_jobs.py

needs boto3 (and the aws CLI for the one CLI test); `.ci/run` installs both
into a virtualenv.
"""

import base64
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

import boto3
import botocore
from botocore.config import Config

from harness import Server


FIELDS = {
    "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress",
              "ContentType": "EMAIL_ADDRESS"},
    "FirstName": {"Source": "_source.first_name", "Target": "_profile.FirstName",
                  "ContentType": "NAME"},
    "Phone": {"Source": "_source.phone", "Target": "_profile.PhoneNumber",
              "ContentType": "PHONE_NUMBER"},
    "Notes": {"Source": "_source.notes", "Target": "_profile.Attributes.Notes",
              "ContentType": "STRING"},
}


def generate(seed, n, emails):
    """A CSV of `n` rows over the address pool `emails`, and what sluice must
    make of it: the keys that survive, and how many rows fail."""
    rng = random.Random(seed)
    lines = ["email,first_name,phone,notes"]
    keys, failed = set(), 0
    for i in range(n):
        roll = rng.random()
        if roll < 0.04:
            lines.append(",Nobody,555-0100,no key")  # empty key: fails
            failed += 1
            continue
        if roll < 0.06:
            lines.append("x%d@example.com,Too,Many,Fields,Here" % i)  # 5 fields
            failed += 1
            continue
        email = rng.choice(emails)
        shown = email.upper() if rng.random() < 0.3 else email  # same key
        note = '"line one\nline two, with ""quotes"""' if rng.random() < 0.2 else "plain"
        lines.append("  %s ,Ann%d,+1 206 555 %04d,%s" % (shown, i, i % 10000, note))
        keys.add(email)
    return ("\n".join(lines) + "\n").encode(), keys, failed


def sse_headers(token):
    key = base64.b64decode(token)
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": token,
        "x-amz-server-side-encryption-customer-key-MD5":
            base64.b64encode(hashlib.md5(key).digest()).decode(),
        "Content-Type": "application/octet-stream",
    }


def put(url, body, headers):
    """A plain HTTP PUT; returns (status, body)."""
    req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait(client, domain, job, timeout=120):
    deadline = time.time() + timeout
    while True:
        j = client.get_upload_job(DomainName=domain, JobId=job)
        if j["Status"] not in ("CREATED", "IN_PROGRESS"):
            return j
        if time.time() > deadline:
            raise AssertionError("job %s still %s" % (job, j["Status"]))
        time.sleep(0.2)


class UploadJobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.cp = cls.server.client()
        cls.cp.create_domain(DomainName="shop", DefaultExpirationDays=30,
                             Tags={"team": "growth"})

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def new_job(self, name="people"):
        return self.cp.create_upload_job(
            DomainName="shop", DisplayName=name, Fields=FIELDS,
            UniqueKey="Email", DataExpiry=10)["JobId"]

    def upload(self, job, body):
        path = self.cp.get_upload_job_path(DomainName="shop", JobId=job)
        self.assertIn("ValidUntil", path)
        status, text = put(path["Url"], body, sse_headers(path["ClientToken"]))
        self.assertEqual(status, 200, text)
        return path

    def test_1_the_whole_flow_twice(self):
        pool = ["user%d@example.com" % i for i in range(3000)]
        body, keys, failed = generate(1, 6000, pool)
        job = self.new_job()
        self.assertRegex(job, "^[a-f0-9]{32}$")
        self.upload(job, body)
        self.cp.start_upload_job(DomainName="shop", JobId=job)
        done = wait(self.cp, "shop", job)
        self.assertEqual(done["Status"], "PARTIALLY_SUCCEEDED")
        self.assertEqual(done["ResultsSummary"], {
            "CreatedRecords": len(keys), "UpdatedRecords": 0, "FailedRecords": failed})
        self.assertEqual(done["Fields"], FIELDS)
        self.assertEqual(done["UniqueKey"], "Email")
        self.assertEqual(done["DataExpiry"], 10)
        self.assertIn("CompletedAt", done)

        # Half the addresses again, half new: updates and creates.
        pool2 = pool[:1500] + ["new%d@example.com" % i for i in range(1500)]
        body2, keys2, failed2 = generate(2, 4000, pool2)
        job2 = self.new_job("second")
        self.upload(job2, body2)
        self.cp.start_upload_job(DomainName="shop", JobId=job2)
        done2 = wait(self.cp, "shop", job2)
        self.assertEqual(done2["ResultsSummary"], {
            "CreatedRecords": len(keys2 - keys),
            "UpdatedRecords": len(keys2 & keys),
            "FailedRecords": failed2})

        d = self.cp.get_domain(DomainName="shop")
        self.assertEqual(d["Stats"]["ProfileCount"], len(keys | keys2))
        self.assertEqual(d["Tags"], {"team": "growth"})
        self.assertEqual(d["DefaultExpirationDays"], 30)
        page = self.cp.list_upload_jobs(DomainName="shop", MaxResults=1)
        self.assertEqual(len(page["Items"]), 1)
        rest = self.cp.list_upload_jobs(DomainName="shop", MaxResults=500,
                                        NextToken=page["NextToken"])
        ids = [i["JobId"] for i in page["Items"] + rest["Items"]]
        self.assertIn(job, ids)
        self.assertIn(job2, ids)
        names = [i["DomainName"] for i in self.cp.list_domains()["Items"]]
        self.assertIn("shop", names)

    def test_2_a_bad_file_fails_as_validation(self):
        job = self.new_job("no email column")
        self.upload(job, b"first_name,phone,notes\nAnn,1,x\n")
        self.cp.start_upload_job(DomainName="shop", JobId=job)
        done = wait(self.cp, "shop", job)
        self.assertEqual(done["Status"], "FAILED")
        self.assertEqual(done["StatusReason"], "VALIDATION_FAILURE")

    def test_3_stop_and_start_without_a_file(self):
        job = self.new_job("never uploaded")
        with self.assertRaises(self.cp.exceptions.BadRequestException) as e:
            self.cp.start_upload_job(DomainName="shop", JobId=job)
        self.assertIn("no uploaded file", str(e.exception))
        self.cp.stop_upload_job(DomainName="shop", JobId=job)
        self.assertEqual(
            self.cp.get_upload_job(DomainName="shop", JobId=job)["Status"], "STOPPED")

    def test_4_uploads_refused(self):
        job = self.new_job("refusals")
        path = self.cp.get_upload_job_path(DomainName="shop", JobId=job)
        url, token = path["Url"], path["ClientToken"]
        good = sse_headers(token)

        sig = url.rsplit("=", 1)[1]
        tampered = url[: -len(sig)] + ("0" if sig[0] != "0" else "1") + sig[1:]
        status, text = put(tampered, b"a", good)
        self.assertEqual(status, 403)
        self.assertIn("SignatureDoesNotMatch", text)
        other_job = url.replace(job, "0" * 32)
        self.assertIn("SignatureDoesNotMatch", put(other_job, b"a", good)[1])

        other = base64.b64encode(os.urandom(32)).decode()
        status, text = put(url, b"a", sse_headers(other))
        self.assertEqual(status, 403)
        self.assertIn("AccessDenied", text)

        bad_md5 = dict(good)
        bad_md5["x-amz-server-side-encryption-customer-key-MD5"] = \
            base64.b64encode(hashlib.md5(b"x").digest()).decode()
        status, text = put(url, b"a", bad_md5)
        self.assertEqual(status, 400)
        self.assertIn("InvalidArgument", text)
        self.assertIn("MD5", text)

        for missing in ("x-amz-server-side-encryption-customer-algorithm",
                        "x-amz-server-side-encryption-customer-key"):
            h = dict(good)
            del h[missing]
            status, text = put(url, b"a", h)
            self.assertEqual(status, 400, missing)
            self.assertIn("InvalidArgument", text)
        status, text = put(url, b"a", {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 400)

        aes = dict(good)
        aes["x-amz-server-side-encryption-customer-algorithm"] = "AES128"
        self.assertIn("InvalidEncryptionAlgorithm", put(url, b"a", aes)[1])

        # Nothing refused was stored: starting still finds no file.
        with self.assertRaises(self.cp.exceptions.BadRequestException):
            self.cp.start_upload_job(DomainName="shop", JobId=job)

    def test_5_refusals_reach_a_client_that_sends_its_body_first(self):
        # urllib sends the whole body before it reads the answer (no
        # Expect: 100-continue): the refusal must reach it, not a
        # connection closed under it (Broken pipe).
        job = self.new_job("body first")
        path = self.cp.get_upload_job_path(DomainName="shop", JobId=job)
        url, good = path["Url"], sse_headers(path["ClientToken"])
        body = b"email\n" + b"x" * (8 << 20)
        bad_md5 = dict(good)
        bad_md5["x-amz-server-side-encryption-customer-key-MD5"] = \
            base64.b64encode(hashlib.md5(b"x").digest()).decode()
        for headers, status, code in [(bad_md5, 400, "InvalidArgument"),
                                      ({"Content-Type": "text/csv"}, 400, "InvalidArgument"),
                                      (sse_headers(base64.b64encode(os.urandom(32)).decode()),
                                       403, "AccessDenied")]:
            got, text = put(url, body, headers)
            self.assertEqual(got, status, text)
            self.assertIn(code, text)
        sig = url.rsplit("=", 1)[1]
        tampered = url[: -len(sig)] + ("0" if sig[0] != "0" else "1") + sig[1:]
        got, text = put(tampered, body, good)
        self.assertEqual(got, 403, text)
        self.assertIn("SignatureDoesNotMatch", text)

    def test_6_unsigned_and_wrong_secret(self):
        try:
            urllib.request.urlopen(self.server.url + "/domains", timeout=10)
            self.fail("an unsigned call was answered")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 403)
            self.assertEqual(e.headers["x-amzn-ErrorType"],
                             "MissingAuthenticationTokenException")
        unsigned = self.server.client(signature_version=botocore.UNSIGNED)
        with self.assertRaises(botocore.exceptions.ClientError) as e:
            unsigned.list_domains()
        self.assertEqual(e.exception.response["Error"]["Code"],
                         "MissingAuthenticationTokenException")
        wrong = self.server.client(secret="not-the-secret")
        with self.assertRaises(botocore.exceptions.ClientError) as e:
            wrong.list_domains()
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidSignatureException")
        stranger = boto3.client(
            "customer-profiles", endpoint_url=self.server.url, region_name="us-east-1",
            aws_access_key_id="AKIASTRANGER", aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}))
        with self.assertRaises(botocore.exceptions.ClientError) as e:
            stranger.list_domains()
        self.assertEqual(e.exception.response["Error"]["Code"], "UnrecognizedClientException")

    def test_7_model_errors(self):
        with self.assertRaises(self.cp.exceptions.ResourceNotFoundException):
            self.cp.get_domain(DomainName="nope")
        with self.assertRaises(self.cp.exceptions.ResourceNotFoundException):
            self.cp.create_upload_job(DomainName="nope", DisplayName="x", Fields=FIELDS,
                                      UniqueKey="Email")
        bad = dict(FIELDS, Age={"Source": "_source.age", "Target": "_profile.Age",
                                "ContentType": "INTEGER"})
        with self.assertRaises(self.cp.exceptions.BadRequestException) as e:
            self.cp.create_upload_job(DomainName="shop", DisplayName="x", Fields=bad,
                                      UniqueKey="Email")
        self.assertIn("Fields.Age.ContentType", str(e.exception))
        with self.assertRaises(self.cp.exceptions.BadRequestException) as e:
            self.cp.create_upload_job(DomainName="shop", DisplayName="x", Fields=FIELDS,
                                      UniqueKey="Missing")
        self.assertIn("UniqueKey", str(e.exception))
        with self.assertRaises(self.cp.exceptions.BadRequestException):
            self.cp.create_domain(DomainName="shop", DefaultExpirationDays=3)
        with self.assertRaises(self.cp.exceptions.BadRequestException):
            self.cp.create_domain(DomainName="toolong", DefaultExpirationDays=5000)

    def test_9_update_domain_and_the_default_expiry(self):
        cp = self.cp
        made = cp.create_domain(DomainName="upd", DefaultExpirationDays=30, Tags={"a": "1"},
                                DeadLetterQueueUrl="https://sqs.us-east-1.amazonaws.com/1/q")
        # An upload job that names no DataExpiry gets the service's 14 days.
        job = cp.create_upload_job(DomainName="upd", DisplayName="no expiry", Fields=FIELDS,
                                   UniqueKey="Email")["JobId"]
        self.assertEqual(cp.get_upload_job(DomainName="upd", JobId=job)["DataExpiry"], 14)
        got = cp.update_domain(DomainName="upd", DefaultExpirationDays=60,
                               DeadLetterQueueUrl="", Tags={"b": "2"})
        self.assertEqual(got["DomainName"], "upd")
        self.assertEqual(got["DefaultExpirationDays"], 60)
        self.assertNotIn("DeadLetterQueueUrl", got)
        self.assertEqual(got["Tags"], {"b": "2"})
        self.assertEqual(got["CreatedAt"], made["CreatedAt"])
        self.assertGreaterEqual(got["LastUpdatedAt"], made["LastUpdatedAt"])
        # What an update does not name stays.
        again = cp.update_domain(DomainName="upd", DefaultEncryptionKey="arn:aws:kms:k")
        self.assertEqual((again["DefaultExpirationDays"], again["Tags"],
                          again["DefaultEncryptionKey"]), (60, {"b": "2"}, "arn:aws:kms:k"))
        d = cp.get_domain(DomainName="upd")
        self.assertEqual((d["DefaultExpirationDays"], d["Tags"]), (60, {"b": "2"}))
        with self.assertRaises(cp.exceptions.ResourceNotFoundException):
            cp.update_domain(DomainName="nope", DefaultExpirationDays=3)
        with self.assertRaises(cp.exceptions.BadRequestException) as e:
            cp.update_domain(DomainName="upd", DefaultExpirationDays=5000)
        self.assertIn("DefaultExpirationDays", str(e.exception))

    def test_8_the_aws_cli(self):
        aws = shutil.which("aws")
        if not aws:
            self.skipTest("the aws CLI is not installed")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.server.key_id,
                   AWS_SECRET_ACCESS_KEY=self.server.secret,
                   AWS_DEFAULT_REGION="us-east-1")
        out = subprocess.run(
            [aws, "customer-profiles", "get-domain", "--domain-name", "shop",
             "--endpoint-url", self.server.url, "--output", "json"],
            env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('"DomainName": "shop"', out.stdout)


class SmallServer(unittest.TestCase):
    """A server with 1-second URLs and 1 KiB uploads."""

    def test_expired_urls_and_oversized_uploads_are_refused(self):
        server = Server("--url-ttl", "1", "--max-upload", "1KiB")
        try:
            cp = server.client()
            cp.create_domain(DomainName="d", DefaultExpirationDays=1)
            job = cp.create_upload_job(DomainName="d", DisplayName="x", Fields=FIELDS,
                                       UniqueKey="Email")["JobId"]
            path = cp.get_upload_job_path(DomainName="d", JobId=job)
            headers = sse_headers(path["ClientToken"])
            big = b"email\n" + b"a@example.com\n" * 100
            status, text = put(path["Url"], big, headers)  # Content-Length
            self.assertEqual(status, 400)
            self.assertIn("EntityTooLarge", text)
            status, text = put(path["Url"], iter([big[:700], big[700:]]),
                               dict(headers, **{"Transfer-Encoding": "chunked"}))
            self.assertEqual(status, 400)
            self.assertIn("EntityTooLarge", text)
            with self.assertRaises(cp.exceptions.BadRequestException):
                cp.start_upload_job(DomainName="d", JobId=job)
            time.sleep(2.5)
            status, text = put(path["Url"], b"email\n", headers)
            self.assertEqual(status, 403)
            self.assertIn("<Code>AccessDenied</Code>", text)
            self.assertIn("Request has expired", text)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
