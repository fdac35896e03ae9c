"""Pinpoint import jobs against `sluice serve`, driven by boto3.

Creates an app, puts a folder of CSV endpoint files (with a subfolder and a
file of another format that must be skipped) and an NDJSON file into a
bucket with `sluice bucket`, runs CreateImportJob for each (one defining a
segment, one registering endpoints), polls GetImportJob to COMPLETED and
checks the pieces, the counts, the Failures text, the endpoints and the
segment against what is worked out here. Then bad files, bad requests and an
unsigned call; then the same CSV job with the buckets on moto's S3 server,
which must give the same answer.

    SLUICE_BIN=target/debug/sluice python tests/boto3/test_import_jobs.py
"""

import gzip
import json
import os
import subprocess
import tempfile
import time
import unittest

import botocore
from botocore.config import Config

from harness import Moto, Server, sluice_bin

ROLE = "arn:aws:iam::123456789012:role/PinpointImport"

# Two CSV files in a folder and its subfolder. Header names repeat
# (Attributes.Team twice: two values); a quoted field holds a newline.
PART1 = (
    "ChannelType,Address,User.UserId,Attributes.Team,Attributes.Team,Metrics.score,"
    "Location.Latitude,Demographic.Platform\n"
    "EMAIL,Ann@Example.com,u1,red,blue,4.5,59.9,ios\n"
    "SMS,(415) 555-0132,u2,\"green\nteam\",gold,1,-33.5,android\n"
    "FAX,12345,u3,x,,,,\n"                       # line 5: no such channel
    "EMAIL,not-an-address,u4,,,,,\n"             # line 6: bad e-mail
    "EMAIL,bob@example.com,u5,,,lots,,\n"        # line 7: metric not a number
    "EMAIL,cy@example.com,u6,,,,200,\n"          # line 8: latitude out of range
)
PART2 = (
    "Address,ChannelType,User.UserId,OptOut\n"
    "ann@EXAMPLE.com,EMAIL,u1,ALL\n"             # same endpoint as part1 line 2
    "dee@example.com,EMAIL,u7,NONE\n"
    "+1 415 555 0199,VOICE,u7,NONE\n"
)
CSV_FAILURES = [
    # Lines count the newline inside the quoted field of record 2.
    "s3://inbox/csv/part1.csv:5: record 3: ChannelType: \"FAX\" is not one of",
    "s3://inbox/csv/part1.csv:6: record 4: Address: \"not-an-address\" is not a valid EMAIL",
    "s3://inbox/csv/part1.csv:7: record 5: Metrics.score: \"lots\" is not a number",
    "s3://inbox/csv/part1.csv:8: record 6: Location.Latitude: 200 is not between -90 and 90",
]

NDJSON = "\n".join(json.dumps(e) for e in [
    {"Id": "ep-1", "ChannelType": "EMAIL", "Address": "eve@example.com",
     "User": {"UserId": "u9", "UserAttributes": {"Plan": ["gold"]}},
     "Attributes": {"Interests": ["rust", "csv"]}, "Metrics": {"visits": 3}},
    {"Id": "ep-2", "ChannelType": "SMS", "Address": "415-555-0100",
     "User": {"UserId": "u9"}, "EffectiveDate": "2026-11-01T10:00:00+01:00"},
    # ep-1 again: the last row of an identity wins.
    {"Id": "ep-1", "ChannelType": "EMAIL", "Address": "Eve@Example.com",
     "User": {"UserId": "u9"}, "Attributes": {"Interests": ["rust"]}},
    # A new endpoint needs a channel and an address: refused when written.
    {"Id": "ep-3", "Attributes": {"Interests": ["none"]}},
]) + "\n"


class Cli:
    """`sluice bucket` against a data directory (and maybe an S3 server)."""

    def __init__(self, data_dir, env=None):
        self.data_dir, self.env = data_dir, dict(os.environ, **(env or {}))

    def __call__(self, *args, ok=True):
        out = subprocess.run([sluice_bin(), "bucket", *args, "--data-dir", self.data_dir],
                             capture_output=True, text=True, env=self.env)
        if ok:
            assert out.returncode == 0, out.stderr
        return out

    def put_text(self, text, url):
        with tempfile.NamedTemporaryFile("w", suffix=".tmp", delete=False) as f:
            f.write(text)
        try:
            self("put", f.name, url)
        finally:
            os.unlink(f.name)


def fill_bucket(cli):
    cli("mb", "s3://inbox")
    cli.put_text(PART1, "s3://inbox/csv/part1.csv")
    cli.put_text(PART2, "s3://inbox/csv/sub/part2.csv")
    cli.put_text("not an endpoint file", "s3://inbox/csv/README.txt")
    cli.put_text(NDJSON, "s3://inbox/json/endpoints.ndjson")
    cli.put_text(NDJSON, "s3://inbox/exported/part-00000")
    cli.put_text("Nickname,Address\nx,y\nz,w\n", "s3://inbox/bad/header.csv")
    cli.put_text("ChannelType,Address\nEMAIL,ok@example.com\nEMAIL,nope\n",
                 "s3://inbox/some-bad/rows.csv")


def wait(pp, app, job, timeout=60):
    deadline = time.time() + timeout
    seen = []
    while True:
        r = pp.get_import_job(ApplicationId=app, JobId=job)["ImportJobResponse"]
        if not seen or seen[-1] != r["JobStatus"]:
            seen.append(r["JobStatus"])
        if r["JobStatus"] in ("COMPLETED", "FAILED"):
            return r, seen
        assert time.time() < deadline, r
        time.sleep(0.1)


def import_job(pp, app, **req):
    req.setdefault("RoleArn", ROLE)
    r = pp.create_import_job(ApplicationId=app, ImportJobRequest=req)
    return r["ImportJobResponse"]


def csv_job(pp):
    """The CSV folder imported with DefineSegment; returns what a test
    compares between the local and the S3 bucket paths."""
    app = pp.create_app(CreateApplicationRequest={"Name": "shop"})["ApplicationResponse"]["Id"]
    created = import_job(pp, app, Format="CSV", S3Url="s3://inbox/csv/",
                         DefineSegment=True, SegmentName="csv-import")
    done, seen = wait(pp, app, created["Id"])
    users = {}
    for u in ("u1", "u2", "u7"):
        eps = pp.get_user_endpoints(ApplicationId=app, UserId=u)["EndpointsResponse"]["Item"]
        users[u] = sorted((e["ChannelType"], e["Address"], e.get("OptOut")) for e in eps)
    seg = pp.get_segment(ApplicationId=app, SegmentId=done["Definition"]["SegmentId"])
    return app, created, done, seen, users, seg["SegmentResponse"]


class ImportJobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.pp = cls.server.client(service="pinpoint")
        fill_bucket(Cli(os.path.join(cls.server.dir, "data")))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_csv_folder_with_a_segment(self):
        app, created, done, seen, users, seg = csv_job(self.pp)
        self.assertEqual(created["JobStatus"], "PENDING_JOB", "waiting for one of the app's job slots")
        self.assertEqual(created["Type"], "IMPORT")
        self.assertEqual(seen[-1], "COMPLETED", done)
        # One piece per file (they are small); README.txt is not CSV.
        self.assertEqual((done["TotalPieces"], done["CompletedPieces"], done["FailedPieces"]),
                         (2, 2, 0))
        self.assertEqual(done["TotalProcessed"], 9)
        self.assertEqual(done["TotalFailures"], 4)
        self.assertEqual(len(done["Failures"]), 4)
        for got, want in zip(done["Failures"], CSV_FAILURES):
            self.assertTrue(got.startswith(want), (got, want))
        self.assertIn("T", done["CreationDate"])
        self.assertIn("T", done["CompletionDate"])
        # Ann's two rows are one endpoint (address normalized); the later
        # row, in the subfolder's file, set OptOut.
        self.assertEqual(users["u1"], [("EMAIL", "ann@example.com", "ALL")])
        self.assertEqual(users["u2"], [("SMS", "+14155550132", "NONE")])  # the default
        self.assertEqual(users["u7"], [("EMAIL", "dee@example.com", "NONE"),
                                       ("VOICE", "+14155550199", "NONE")])
        # The segment holds the 4 surviving endpoints.
        self.assertEqual(seg["Name"], "csv-import")
        self.assertEqual(seg["SegmentType"], "IMPORT")
        self.assertEqual(seg["ImportDefinition"]["Size"], 4)
        self.assertEqual(seg["ImportDefinition"]["ChannelCounts"],
                         {"EMAIL": 2, "SMS": 1, "VOICE": 1})
        self.assertEqual(seg["ImportDefinition"]["S3Url"], "s3://inbox/csv/")
        jobs = self.pp.get_segment_import_jobs(ApplicationId=app, SegmentId=seg["Id"])
        self.assertEqual([j["Id"] for j in jobs["ImportJobsResponse"]["Item"]], [created["Id"]])
        segs = self.pp.get_segments(ApplicationId=app)["SegmentsResponse"]["Item"]
        self.assertEqual([s["Id"] for s in segs], [seg["Id"]])

        # The same folder again, registering: updates, no duplicates.
        again = import_job(self.pp, app, Format="CSV", S3Url="s3://inbox/csv",
                           RegisterEndpoints=True)
        done2, _ = wait(self.pp, app, again["Id"])
        self.assertEqual(done2["JobStatus"], "COMPLETED")
        eps = self.pp.get_user_endpoints(ApplicationId=app, UserId="u7")
        self.assertEqual(len(eps["EndpointsResponse"]["Item"]), 2)
        # The multi-valued header gave two values (one with the quoted
        # newline); numbers are numbers; dotted names nest.
        sms = self.pp.get_user_endpoints(ApplicationId=app, UserId="u2")
        sms = sms["EndpointsResponse"]["Item"][0]
        self.assertEqual(sms["Attributes"]["Team"], ["green\nteam", "gold"])
        self.assertEqual(sms["Metrics"]["score"], 1.0)
        self.assertEqual(sms["Location"]["Latitude"], -33.5)
        self.assertEqual(sms["Demographic"]["Platform"], "android")
        self.assertEqual(sms["ApplicationId"], app)
        # Ann's later row (no attributes) won over her first one.
        ann = self.pp.get_user_endpoints(ApplicationId=app, UserId="u1")
        self.assertNotIn("Attributes", ann["EndpointsResponse"]["Item"][0])

    def test_ndjson_registering_endpoints(self):
        app = self.pp.create_app(CreateApplicationRequest={"Name": "json"})
        app = app["ApplicationResponse"]["Id"]
        created = import_job(self.pp, app, Format="JSON",
                             S3Url="s3://inbox/json/endpoints.ndjson", RegisterEndpoints=True)
        done, _ = wait(self.pp, app, created["Id"])
        self.assertEqual(done["JobStatus"], "COMPLETED", done)
        self.assertEqual((done["TotalPieces"], done["TotalProcessed"], done["TotalFailures"]),
                         (1, 4, 1))
        self.assertEqual(done["Failures"], [
            "s3://inbox/json/endpoints.ndjson:4: record 4: "
            "a new endpoint needs a ChannelType and an Address"])
        ep = self.pp.get_endpoint(ApplicationId=app, EndpointId="ep-1")["EndpointResponse"]
        self.assertEqual(ep["Attributes"], {"Interests": ["rust"]})
        self.assertEqual(ep["Address"], "eve@example.com")
        self.assertNotIn("Metrics", ep)
        ep2 = self.pp.get_endpoint(ApplicationId=app, EndpointId="ep-2")["EndpointResponse"]
        self.assertEqual(ep2["Address"], "+14155550100")
        self.assertEqual(ep2["EffectiveDate"], "2026-11-01T09:00:00.000Z")
        users = self.pp.get_user_endpoints(ApplicationId=app, UserId="u9")
        self.assertEqual(sorted(e["Id"] for e in users["EndpointsResponse"]["Item"]),
                         ["ep-1", "ep-2"])
        with self.assertRaises(self.pp.exceptions.NotFoundException):
            self.pp.get_endpoint(ApplicationId=app, EndpointId="ep-3")
        jobs = self.pp.get_import_jobs(ApplicationId=app)["ImportJobsResponse"]["Item"]
        self.assertEqual([j["Id"] for j in jobs], [created["Id"]])

    def test_the_format_is_the_jobs_and_a_segment_name_alone_makes_no_segment(self):
        app = self.pp.create_app(CreateApplicationRequest={"Name": "named"})
        app = app["ApplicationResponse"]["Id"]
        # A file with no extension, named by its URL or found in its folder,
        # is read as the Format says; SegmentName without DefineSegment is
        # kept and makes no segment.
        for url in ("s3://inbox/exported/part-00000", "s3://inbox/exported/"):
            created = import_job(self.pp, app, Format="JSON", S3Url=url,
                                 RegisterEndpoints=True, SegmentName="ignored")
            self.assertEqual(created["Definition"]["SegmentName"], "ignored")
            done, _ = wait(self.pp, app, created["Id"])
            self.assertEqual(done["JobStatus"], "COMPLETED", done)
            self.assertEqual((done["TotalPieces"], done["TotalProcessed"]), (1, 4))
            self.assertNotIn("SegmentId", done["Definition"])
        self.assertEqual(self.pp.get_segments(ApplicationId=app)["SegmentsResponse"]["Item"], [])
        # The same file as CSV is read as CSV: no header it can use.
        created = import_job(self.pp, app, Format="CSV", S3Url="s3://inbox/exported/part-00000")
        done, _ = wait(self.pp, app, created["Id"])
        self.assertEqual(done["JobStatus"], "FAILED", done)

    def test_endpoints_updated_and_deleted(self):
        pp = self.pp
        app = pp.create_app(CreateApplicationRequest={"Name": "edit"})["ApplicationResponse"]["Id"]
        r = pp.update_endpoint(ApplicationId=app, EndpointId="ep-a", EndpointRequest={
            "ChannelType": "EMAIL", "Address": " Ann@Example.com ", "User": {"UserId": "u1"},
            "Attributes": {"team": ["red"]}})
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 202)
        self.assertEqual(r["MessageBody"]["Message"], "Accepted")
        self.assertRegex(r["MessageBody"]["RequestID"], "^[0-9a-f-]{36}$")
        ep = pp.get_endpoint(ApplicationId=app, EndpointId="ep-a")["EndpointResponse"]
        self.assertEqual(ep["Address"], "ann@example.com")
        # What the service sets on an endpoint that does not say.
        self.assertEqual((ep["EndpointStatus"], ep["OptOut"]), ("ACTIVE", "NONE"))
        for member in ("EffectiveDate", "CreationDate", "CohortId"):
            self.assertIn(member, ep)
        # An update lays its members over the endpoint's.
        pp.update_endpoint(ApplicationId=app, EndpointId="ep-a", EndpointRequest={
            "Attributes": {"size": ["L"]}, "OptOut": "ALL"})
        ep2 = pp.get_endpoint(ApplicationId=app, EndpointId="ep-a")["EndpointResponse"]
        self.assertEqual(ep2["Attributes"], {"team": ["red"], "size": ["L"]})
        self.assertEqual((ep2["OptOut"], ep2["CreationDate"]), ("ALL", ep["CreationDate"]))
        with self.assertRaises(pp.exceptions.BadRequestException) as e:
            pp.update_endpoint(ApplicationId=app, EndpointId="ep-new",
                               EndpointRequest={"Attributes": {"a": ["b"]}})
        self.assertIn("ChannelType and an Address", str(e.exception))
        with self.assertRaises(pp.exceptions.BadRequestException) as e:
            pp.update_endpoint(ApplicationId=app, EndpointId="ep-new",
                               EndpointRequest={"ChannelType": "EMAIL", "Address": "nope"})
        self.assertIn("Address", str(e.exception))
        with self.assertRaises(pp.exceptions.NotFoundException):
            pp.update_endpoint(ApplicationId="f" * 32, EndpointId="ep-a",
                               EndpointRequest={"OptOut": "ALL"})

        batch = [{"Id": "ep-b", "ChannelType": "SMS", "Address": "+1 415 555 0100",
                  "User": {"UserId": "u1"}},
                 {"Id": "ep-c", "ChannelType": "EMAIL", "Address": "c@example.com",
                  "User": {"UserId": "u2"}}]
        r = pp.update_endpoints_batch(ApplicationId=app, EndpointBatchRequest={"Item": batch})
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 202)
        u1 = pp.get_user_endpoints(ApplicationId=app, UserId="u1")["EndpointsResponse"]["Item"]
        self.assertEqual(sorted((e["Id"], e["Address"]) for e in u1),
                         [("ep-a", "ann@example.com"), ("ep-b", "+14155550100")])
        # A later item may update what an earlier one makes.
        pp.update_endpoints_batch(ApplicationId=app, EndpointBatchRequest={"Item": [
            {"Id": "ep-f", "ChannelType": "EMAIL", "Address": "f@example.com"},
            {"Id": "ep-f", "Attributes": {"late": ["yes"]}}]})
        ep_f = pp.get_endpoint(ApplicationId=app, EndpointId="ep-f")["EndpointResponse"]
        self.assertEqual((ep_f["Address"], ep_f["Attributes"]),
                         ("f@example.com", {"late": ["yes"]}))
        # One bad item: nothing of the batch is written, and the item is named.
        bad = [{"Id": "ep-d", "ChannelType": "EMAIL", "Address": "d@example.com"},
               {"Id": "ep-e", "ChannelType": "EMAIL", "Address": "e@example.com",
                "Location": {"Latitude": 123.0}}]
        with self.assertRaises(pp.exceptions.BadRequestException) as e:
            pp.update_endpoints_batch(ApplicationId=app, EndpointBatchRequest={"Item": bad})
        self.assertIn("Item[1]", str(e.exception))
        self.assertIn("Latitude", str(e.exception))
        with self.assertRaises(pp.exceptions.NotFoundException):
            pp.get_endpoint(ApplicationId=app, EndpointId="ep-d")
        many = [{"Id": "m%d" % i, "ChannelType": "EMAIL", "Address": "m%d@x.com" % i}
                for i in range(101)]
        with self.assertRaises(pp.exceptions.BadRequestException):
            pp.update_endpoints_batch(ApplicationId=app, EndpointBatchRequest={"Item": many})

        gone = pp.delete_endpoint(ApplicationId=app, EndpointId="ep-c")
        self.assertEqual(gone["ResponseMetadata"]["HTTPStatusCode"], 202)
        self.assertEqual(gone["EndpointResponse"]["Address"], "c@example.com")
        for call in (pp.get_endpoint, pp.delete_endpoint):
            with self.assertRaises(pp.exceptions.NotFoundException):
                call(ApplicationId=app, EndpointId="ep-c")
        gone = pp.delete_user_endpoints(ApplicationId=app, UserId="u1")
        self.assertEqual(sorted(e["Id"] for e in gone["EndpointsResponse"]["Item"]),
                         ["ep-a", "ep-b"])
        for call in (pp.get_user_endpoints, pp.delete_user_endpoints):
            with self.assertRaises(pp.exceptions.NotFoundException):
                call(ApplicationId=app, UserId="u1")

    def test_export_then_import_into_another_app(self):
        pp = self.pp
        app = pp.create_app(CreateApplicationRequest={"Name": "out"})["ApplicationResponse"]["Id"]
        items = [{"Id": "x%d" % i, "ChannelType": "EMAIL", "Address": "x%d@example.com" % i,
                  "User": {"UserId": "u%d" % (i % 2)}, "Attributes": {"n": [str(i)]}}
                 for i in range(5)]
        pp.update_endpoints_batch(ApplicationId=app, EndpointBatchRequest={"Item": items})
        r = pp.create_export_job(ApplicationId=app, ExportJobRequest={
            "S3UrlPrefix": "s3://inbox/exports/", "RoleArn": ROLE})
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 202)
        job = r["ExportJobResponse"]
        self.assertEqual(job["Type"], "EXPORT")
        deadline = time.time() + 60
        while True:
            done = pp.get_export_job(ApplicationId=app, JobId=job["Id"])["ExportJobResponse"]
            if done["JobStatus"] in ("COMPLETED", "FAILED"):
                break
            self.assertLess(time.time(), deadline, done)
            time.sleep(0.1)
        self.assertEqual(done["JobStatus"], "COMPLETED", done)
        self.assertEqual((done["TotalProcessed"], done["TotalPieces"], done["CompletedPieces"]),
                         (5, 1, 1))
        self.assertEqual(done["Definition"]["S3UrlPrefix"], "s3://inbox/exports/")
        listed = pp.get_export_jobs(ApplicationId=app)["ExportJobsResponse"]["Item"]
        self.assertEqual([j["Id"] for j in listed], [job["Id"]])
        # The file, through S3: gzip, one GetEndpoint-shaped endpoint a line.
        s3 = self.server.client(service="s3")
        keys = [o["Key"] for o in s3.list_objects_v2(
            Bucket="inbox", Prefix="exports/%s/" % job["Id"])["Contents"]]
        self.assertEqual(keys, ["exports/%s/part-00000.ndjson.gz" % job["Id"]])
        body = s3.get_object(Bucket="inbox", Key=keys[0])["Body"].read()
        lines = [json.loads(l) for l in gzip.decompress(body).decode().splitlines()]
        self.assertEqual(sorted(l["Id"] for l in lines), ["x0", "x1", "x2", "x3", "x4"])
        for line in lines:
            got = pp.get_endpoint(ApplicationId=app, EndpointId=line["Id"])["EndpointResponse"]
            self.assertEqual(line, got)
        # Read back into another app: the same endpoints.
        other = pp.create_app(CreateApplicationRequest={"Name": "in"})["ApplicationResponse"]["Id"]
        back = import_job(pp, other, Format="JSON", S3Url="s3://inbox/exports/%s/" % job["Id"],
                          RegisterEndpoints=True)
        done2, _ = wait(pp, other, back["Id"])
        self.assertEqual((done2["JobStatus"], done2["TotalProcessed"]), ("COMPLETED", 5), done2)
        for line in lines:
            got = pp.get_endpoint(ApplicationId=other, EndpointId=line["Id"])["EndpointResponse"]
            for member in ("ApplicationId", "CreationDate"):
                got.pop(member)
                line.pop(member)
            self.assertEqual(got, line)
        with self.assertRaises(pp.exceptions.NotFoundException) as e:
            pp.create_export_job(ApplicationId=app, ExportJobRequest={
                "S3UrlPrefix": "s3://no-such-bucket/x/", "RoleArn": ROLE})
        self.assertIn("no-such-bucket", str(e.exception))
        with self.assertRaises(pp.exceptions.BadRequestException):
            pp.create_export_job(ApplicationId=app, ExportJobRequest={
                "S3UrlPrefix": "s3://inbox/x/", "RoleArn": "nope"})
        with self.assertRaises(pp.exceptions.NotFoundException):
            pp.get_export_job(ApplicationId=app, JobId="0" * 32)

    def test_deleted_endpoints_leave_their_segment(self):
        app, _, done, _, _, seg = csv_job(self.pp)
        self.assertEqual(seg["ImportDefinition"]["Size"], 4)
        gone = self.pp.delete_user_endpoints(ApplicationId=app, UserId="u7")
        self.assertEqual(len(gone["EndpointsResponse"]["Item"]), 2)
        after = self.pp.get_segment(ApplicationId=app, SegmentId=seg["Id"])["SegmentResponse"]
        self.assertEqual(after["ImportDefinition"]["Size"], 2)
        self.assertEqual(after["ImportDefinition"]["ChannelCounts"], {"EMAIL": 1, "SMS": 1})

    def test_bad_files(self):
        app = self.pp.create_app(CreateApplicationRequest={"Name": "bad"})
        app = app["ApplicationResponse"]["Id"]
        # A header that names no endpoint attribute: the piece fails, the job fails.
        r = import_job(self.pp, app, Format="CSV", S3Url="s3://inbox/bad/",
                       RegisterEndpoints=True)
        done, seen = wait(self.pp, app, r["Id"])
        self.assertEqual(done["JobStatus"], "FAILED", done)
        self.assertEqual((done["TotalPieces"], done["FailedPieces"]), (1, 1))
        self.assertTrue(done["Failures"][0].startswith(
            's3://inbox/bad/header.csv:1: the header: column 1 "Nickname" is not an '
            "endpoint attribute"), done["Failures"])
        # Bad rows among good ones: COMPLETED, with the failures listed.
        r = import_job(self.pp, app, Format="CSV", S3Url="s3://inbox/some-bad/rows.csv",
                       RegisterEndpoints=True)
        done, _ = wait(self.pp, app, r["Id"])
        self.assertEqual(done["JobStatus"], "COMPLETED", done)
        self.assertEqual((done["TotalProcessed"], done["TotalFailures"]), (2, 1))
        self.assertTrue(done["Failures"][0].startswith(
            's3://inbox/some-bad/rows.csv:3: record 2: Address: "nope"'), done["Failures"])

    def test_refusals(self):
        pp = self.pp
        app = pp.create_app(CreateApplicationRequest={"Name": "refusals"})
        app = app["ApplicationResponse"]["Id"]
        cases = [
            ("NotFoundException", dict(Format="CSV", S3Url="s3://no-such-bucket/x.csv"),
             'bucket "no-such-bucket" does not exist'),
            ("NotFoundException", dict(Format="CSV", S3Url="s3://inbox/nothing-here/"),
             "no CSV object at s3://inbox/nothing-here/"),
            ("BadRequestException", dict(Format="CSV", S3Url="https://inbox/x.csv"),
             "is not an s3:// URL"),
            # An S3 key like any other, inside the bucket: not there.
            ("NotFoundException", dict(Format="CSV", S3Url="s3://inbox/../etc/x.csv"),
             "no CSV object at s3://inbox/../etc/x.csv"),
            ("BadRequestException", dict(Format="XML", S3Url="s3://inbox/csv/"),
             'Format "XML" is not CSV or JSON'),
            ("BadRequestException", dict(Format="CSV", S3Url="s3://inbox/csv/",
                                         RoleArn="PinpointImport"), "is not an ARN"),
            ("NotFoundException", dict(Format="CSV", S3Url="s3://inbox/csv/",
                                       SegmentId="no-such-segment"), "Segment no-such-segment"),
        ]
        for code, req, says in cases:
            with self.assertRaises(botocore.exceptions.ClientError) as cm:
                import_job(pp, app, **req)
            err = cm.exception.response
            self.assertEqual(err["Error"]["Code"], code, (req, err))
            self.assertIn(says, err["Error"]["Message"], req)
        with self.assertRaises(pp.exceptions.NotFoundException):
            import_job(pp, "0" * 32, Format="CSV", S3Url="s3://inbox/csv/")
        with self.assertRaises(pp.exceptions.NotFoundException):
            pp.get_import_job(ApplicationId=app, JobId="f" * 32)
        with self.assertRaises(pp.exceptions.NotFoundException):
            pp.get_endpoint(ApplicationId=app, EndpointId="nobody")
        with self.assertRaises(pp.exceptions.BadRequestException):
            pp.get_apps(PageSize="0")
        # Unsigned: refused before anything else.
        unsigned = self.server.client(service="pinpoint",
                                      signature_version=botocore.UNSIGNED)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            unsigned.get_apps()
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        # The error body carries the request id, as the model says.
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            pp.get_app(ApplicationId="0" * 32)
        self.assertTrue(cm.exception.response["ResponseMetadata"]["RequestId"])

    def test_apps_paging_and_delete(self):
        pp = self.pp
        ids = [pp.create_app(CreateApplicationRequest={"Name": "p%d" % i, "tags": {"n": str(i)}})
               ["ApplicationResponse"]["Id"] for i in range(3)]
        seen, token = [], None
        while True:
            kw = {"PageSize": "2"}
            if token:
                kw["Token"] = token
            page = pp.get_apps(**kw)["ApplicationsResponse"]
            seen += [a["Id"] for a in page["Item"]]
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual([i for i in seen if i in ids], ids)
        got = pp.get_app(ApplicationId=ids[0])["ApplicationResponse"]
        self.assertEqual(got["tags"], {"n": "0"})
        self.assertTrue(got["Arn"].endswith(":apps/" + ids[0]))
        pp.delete_app(ApplicationId=ids[0])
        with self.assertRaises(pp.exceptions.NotFoundException):
            pp.get_app(ApplicationId=ids[0])


class ThroughS3(unittest.TestCase):
    """The same CSV job with buckets on moto's S3 server gives the same
    answer as with bucket folders."""

    def test_same_result_as_local_folders(self):
        moto = Moto()
        try:
            local = Server()
            try:
                fill_bucket(Cli(os.path.join(local.dir, "data")))
                want = csv_job(local.client(service="pinpoint"))
            finally:
                local.stop()
            remote = Server(env=moto.env())
            try:
                fill_bucket(Cli(os.path.join(remote.dir, "data"), env=moto.env()))
                # The objects really are in moto.
                keys = [o["Key"] for o in
                        moto.s3().list_objects_v2(Bucket="inbox")["Contents"]]
                self.assertIn("csv/sub/part2.csv", keys)
                got = csv_job(remote.client(service="pinpoint"))
            finally:
                remote.stop()
        finally:
            moto.stop()
        _, _, want_done, _, want_users, want_seg = want
        _, _, got_done, _, got_users, got_seg = got
        for k in ("JobStatus", "TotalPieces", "CompletedPieces", "FailedPieces",
                  "TotalProcessed", "TotalFailures", "Failures"):
            self.assertEqual(got_done[k], want_done[k], k)
        self.assertEqual(got_users, want_users)
        self.assertEqual(got_seg["ImportDefinition"], want_seg["ImportDefinition"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
