"""The bad-input matrix over HTTP (tests/bad_input.rs has the library and
CLI side of the same CSV table): bad files as Customer Profiles upload
jobs and Pinpoint imports, bad request bodies for the REST-JSON and query
decoders, bad manifests, and a trickling upload. Every case gets its exact
outcome, the server answers the next one, and the profiles, endpoints and
jobs stored before are unchanged afterwards."""

import json
import os
import select
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, sluice_bin  # noqa: E402
from test_import_jobs import Cli, ROLE, wait as wait_import  # noqa: E402
from test_upload_jobs import put, sse_headers, wait as wait_upload  # noqa: E402

FIELDS = {
    "Id": {"Source": "_source.id", "Target": "_profile.AccountNumber", "ContentType": "STRING"},
    "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress",
              "ContentType": "EMAIL_ADDRESS"},
    "Name": {"Source": "_source.name", "Target": "_profile.FirstName", "ContentType": "NAME"},
    "Phone": {"Source": "_source.phone", "Target": "_profile.PhoneNumber",
              "ContentType": "PHONE_NUMBER"},
    "Score": {"Source": "_source.score", "Target": "_profile.Attributes.score",
              "ContentType": "NUMBER"},
}
HEADER = b"id,email,name,phone,score\n"
KEY_FAIL = (b'unique key field "Email" (column "email") is not a valid EMAIL_ADDRESS: not an '
            b"e-mail address: a control or invisible formatting character inside the address")

# (name, file, status, created, failed, what StatusReason says or None).
# A file whose every row fails, or that cannot be read, fails the job.
CSV_CASES = [
    ("truncated in a quote", HEADER + b'1,a@b.co,Ann,,1\n2,"c@d.co,Bo',
     "PARTIALLY_SUCCEEDED", 1, 1, None),
    ("invalid UTF-8", HEADER + b"\xff,a@b.co,,,1\n2,c\xfe@d.co,,,\n",
     "FAILED", 0, 2, b'record 1: invalid UTF-8 in column 1 ("id")'),
    ("NUL bytes", HEADER + b"1\x00,a@b.co,A\x00nn,,1\n2,c\x00@d.co,,,\n",
     "PARTIALLY_SUCCEEDED", 1, 1, None),
    ("header only", HEADER, "SUCCEEDED", 0, 0, None),
    ("empty", b"", "FAILED", 0, 0, b"no header row (the input is empty)"),
    ("duplicate header", b"id,email,email\n1,a@b.co,x\n", "FAILED", 0, 0,
     b'line 1: duplicate header name "email" in columns 2 and 3'),
    ("blank header where email should be", b"id,,name,phone,score\n1,a@b.co,,,\n",
     "FAILED", 0, 0, b'line 1: no column "email" in the header (mapped by field "Email")'),
    ("mixed line endings", HEADER + b"1,a@b.co,,,1\r\n2,c@d.co,,,2\r3,e@f.co,,,3\n",
     "SUCCEEDED", 3, 0, None),
    ("BOM in the middle", HEADER + b"1,a@b.co,,,1\n3,\xef\xbb\xbfe@f.co,,,3\n",
     "PARTIALLY_SUCCEEDED", 1, 1, None),
    ("huge numbers", HEADER + b"1,a@b.co,,,1e400\n2,c@d.co,,," + b"9" * 5000 + b"\n",
     "SUCCEEDED", 2, 0, None),
    ("100,000 columns", HEADER.rstrip() + b"".join(b",c%d" % i for i in range(100000)) + b"\n"
     + b"1,a@b.co,A,,1" + b",x" * 100000 + b"\n", "SUCCEEDED", 1, 0, None),
    ("a 100 MB field", HEADER + b'1,a@b.co,"' + b"x" * (100 << 20) + b'",,1\n',
     "SUCCEEDED", 1, 0, None),
]

# Pinpoint NDJSON: (name, text, TotalProcessed, TotalFailures, first failure's start).
DEEP = "[" * 5000 + "]" * 5000
JSON_CASES = [
    ("trailing garbage", '{"ChannelType":"EMAIL","Address":"a@b.co"} x\n', 1, 1,
     "s3://inbox/bad-json/f.ndjson:1: record 1: not an endpoint: trailing characters"),
    ("deeply nested", '{"ChannelType":"EMAIL","Address":"a@b.co","Attributes":%s}\n' % DEEP,
     1, 1, "s3://inbox/bad-json/f.ndjson:1: record 1: not an endpoint: invalid type: sequence, "
     "expected a map at line 1 column 55"),
    ("huge number", '{"ChannelType":"EMAIL","Address":"a@b.co","Metrics":{"m":1e400}}\n',
     1, 1, "s3://inbox/bad-json/f.ndjson:1: record 1: not an endpoint: number out of range"),
    ("not JSON at all", "\x00\x01\x02\n", 1, 1,
     "s3://inbox/bad-json/f.ndjson:1: record 1: not an endpoint"),
]


def raw(server, method, path, body, service="profile", headers=None):
    """A signed request with exactly `body`, as a client that builds its
    own JSON would send it; returns (status, error type, body)."""
    creds = Credentials(server.key_id, server.secret)
    url = server.url + path
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(creds, service, "us-east-1").add_auth(req)
    p = req.prepare()
    r = urllib.request.Request(url, data=body, method=method, headers=dict(p.headers))
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, None, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-amzn-ErrorType"), e.read().decode()


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--request-timeout", "2", "--min-upload-rate", "1MiB")
        cls.cp = cls.server.client()
        cls.pp = cls.server.client(service="pinpoint")
        cls.cp.create_domain(DomainName="bad-input", DefaultExpirationDays=30)
        # What every case must leave alone: a profile and its job.
        cls.seed_job = cls.run_upload(cls, b"id,email,name,phone,score\n"
                                      b"S1,seed@keep.me,Seed,+1 415 555 0100,7\n")
        cls.seed = cls.job(cls, cls.seed_job)
        assert cls.seed["Status"] == "SUCCEEDED", cls.seed

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def run_upload(self, body):
        job = self.cp.create_upload_job(DomainName="bad-input", DisplayName="case",
                                        Fields=FIELDS, UniqueKey="Email")["JobId"]
        path = self.cp.get_upload_job_path(DomainName="bad-input", JobId=job)
        status, text = put(path["Url"], body, sse_headers(path["ClientToken"]))
        assert status == 200, text
        self.cp.start_upload_job(DomainName="bad-input", JobId=job)
        return job

    def job(self, job):
        done = wait_upload(self.cp, "bad-input", job)
        done.pop("ResponseMetadata")
        return done

    def details(self, job):
        """What `sluice jobs show` says of a job: its failure, in full."""
        out = subprocess.run([sluice_bin(), "jobs", "show", job, *self.server.store_args(),
                              "--json"], capture_output=True, text=True, check=True)
        return out.stdout

    def assert_untouched(self):
        self.assertEqual(self.job(self.seed_job), self.seed)
        d = self.cp.get_domain(DomainName="bad-input")
        self.assertGreaterEqual(d["Stats"]["ProfileCount"], 1)

    def test_bad_csv_files_as_upload_jobs(self):
        for name, body, status, created, failed, reason in CSV_CASES:
            with self.subTest(name):
                job = self.run_upload(body)
                done = self.job(job)
                self.assertEqual(done["Status"], status, done)
                summary = done["ResultsSummary"]
                self.assertEqual(
                    (summary["CreatedRecords"] + summary["UpdatedRecords"],
                     summary["FailedRecords"]), (created, failed), done)
                if reason is not None:
                    # The API has an enum; the job record has the place.
                    self.assertEqual(done["StatusReason"], "VALIDATION_FAILURE", done)
                    self.assertIn(json.dumps(reason.decode())[1:-1], self.details(job))
                self.assert_untouched()

    def test_bad_ndjson_as_pinpoint_imports(self):
        cli = Cli(self.server.data)
        cli("mb", "s3://inbox")
        app = self.pp.create_app(CreateApplicationRequest={"Name": "bad-json"})
        app = app["ApplicationResponse"]["Id"]
        for name, text, processed, failures, first in JSON_CASES:
            with self.subTest(name):
                cli.put_text(text, "s3://inbox/bad-json/f.ndjson")
                r = self.pp.create_import_job(ApplicationId=app, ImportJobRequest={
                    "Format": "JSON", "S3Url": "s3://inbox/bad-json/f.ndjson",
                    "RoleArn": ROLE, "RegisterEndpoints": True})["ImportJobResponse"]
                done, _ = wait_import(self.pp, app, r["Id"])
                self.assertEqual((done["TotalProcessed"], done["TotalFailures"]),
                                 (processed, failures), done)
                self.assertTrue(done["Failures"][0].startswith(first), done["Failures"])
        self.assert_untouched()

    def test_bad_request_bodies(self):
        path = "/domains/bad-input/upload-jobs"
        good = {"DisplayName": "x", "Fields": FIELDS, "UniqueKey": "Email"}
        nested = '{"DisplayName": "x", "Fields": %s}' % DEEP
        cases = [
            ("trailing garbage", json.dumps(good) + " x", 400, "BadRequestException",
             "the request body is not valid: trailing characters at line 1"),
            ("deeply nested", nested, 400, "BadRequestException",
             "the request body is not valid: invalid type: sequence, expected a map at line 1 "
             "column 31"),
            ("huge number", json.dumps(dict(good, DataExpiry=1)).replace(": 1}", ": 1e400}"),
             400, "BadRequestException", "the request body is not valid: number out of range"),
            ("too big a number", json.dumps(dict(good, DataExpiry=10 ** 30)), 400,
             "BadRequestException",
             "the request body is not valid: invalid type: floating point `1e+30`, expected i64"),
            ("invalid UTF-8", b'{"DisplayName": "\xff"}', 400, "BadRequestException",
             "the request body is not valid"),
            ("over 1 MiB", json.dumps(dict(good, DisplayName="x" * (1 << 20))), 400,
             "BadRequestException", "the request body is over 1048576 bytes"),
        ]
        for name, body, status, code, message in cases:
            with self.subTest(name):
                body = body if isinstance(body, bytes) else body.encode()
                got = raw(self.server, "POST", path, body,
                          headers={"Content-Type": "application/json"})
                self.assertEqual(got[:2], (status, code), got)
                self.assertIn(message, json.loads(got[2])["Message"], got)
        # Pinpoint names its payload limit itself.
        got = raw(self.server, "POST", "/v1/apps", b'{"Name": "' + b"x" * (2 << 20) + b'"}',
                  service="mobiletargeting")
        self.assertEqual(got[:2], (413, "PayloadTooLargeException"), got[:2])
        self.assert_untouched()

    def test_bad_manifests_and_query_bodies(self):
        ie = self.server.client(service="importexport")
        base = ("manifestVersion: 2.0\naccessKeyId: %s\ndeviceId: d1\nbucket: photos\n"
                "returnAddress:\n    name: Jane\n    street1: 1 Main St\n    city: Town\n"
                "    stateOrProvince: WA\n    postalCode: 98101\n"
                "    phoneNumber: +1 206 555 0100\n    country: USA\n" % self.server.key_id)
        bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
            "%s: &%s [%s]\n" % (c, c, ",".join(["*" + p] * 10))
            for p, c in zip("abcdefgh", "bcdefghi"))
        cases = [
            ("unknown key", base + "colour: blue\n", "InvalidManifestFieldException", "colour"),
            ("YAML bomb", bomb, "MalformedManifestException", "alias"),
            ("not YAML", "a: [b\n", "MalformedManifestException", "line"),
            ("trailing document", base + "---\nmore: 1\n", "MalformedManifestException", ""),
            ("deeply nested", "a: " + "[" * 10000 + "]" * 10000 + "\n",
             "MalformedManifestException", ""),
        ]
        for name, manifest, code, word in cases:
            with self.subTest(name):
                try:
                    ie.create_job(JobType="Import", Manifest=manifest, ValidateOnly=True)
                    self.fail("accepted")
                except ie.exceptions.ClientError as e:
                    self.assertEqual(e.response["Error"]["Code"], code, e.response)
                    self.assertIn(word, e.response["Error"]["Message"])
        got = raw(self.server, "POST", "/", b"Action=GetStatus&Version=2010-06-01&JobId=A&JobId=B",
                  service="IngestionService",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(got[0], 400)
        self.assertIn("<Code>InvalidParameterException</Code>", got[2])
        self.assertIn("JobId is given more than once", got[2])
        self.assert_untouched()

    def test_a_trickling_upload_is_cut_off_and_leaves_no_file(self):
        job = self.cp.create_upload_job(DomainName="bad-input", DisplayName="slow",
                                        Fields=FIELDS, UniqueKey="Email")["JobId"]
        path = self.cp.get_upload_job_path(DomainName="bad-input", JobId=job)
        url = urllib.parse.urlsplit(path["Url"])
        body = HEADER + b"1,a@b.co,,,1\n" * 1000
        head = "PUT %s?%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (
            url.path, url.query, url.netloc, len(body))
        for k, v in sse_headers(path["ClientToken"]).items():
            head += "%s: %s\r\n" % (k, v)
        s = socket.create_connection((url.hostname, url.port))
        s.sendall(head.encode() + b"\r\n" + body[:100])
        started = time.time()
        s.settimeout(30)
        answer = b""
        try:
            while True:
                s.sendall(body[100:101])  # a byte now and then, far below 1 MiB/s
                chunk = s.recv(4096) if select_readable(s, 0.5) else b""
                answer += chunk
                if b"\r\n\r\n" in answer or time.time() - started > 20:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.close()
        self.assertIn(b" 400 ", answer.split(b"\r\n")[0], answer)
        self.assertIn(b"<Code>RequestTimeout</Code>", answer)
        self.assertLess(time.time() - started, 15)
        # Nothing of it was kept: the job has no file to start.
        with self.assertRaises(self.cp.exceptions.BadRequestException) as e:
            self.cp.start_upload_job(DomainName="bad-input", JobId=job)
        self.assertIn("has no uploaded file", str(e.exception))
        # And a whole upload of the same job still works.
        status, text = put(path["Url"], body, sse_headers(path["ClientToken"]))
        self.assertEqual(status, 200, text)
        self.assert_untouched()


def select_readable(s, timeout):
    return bool(select.select([s], [], [], timeout)[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
