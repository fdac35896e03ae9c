"""Pinpoint segments against `sluice serve`, driven by boto3: CreateSegment,
UpdateSegment, DeleteSegment, GetSegment(s), with dimensional segments over
what endpoints carry (Demographic, Location with Country and GPSPoint,
Attributes, UserAttributes, Metrics, Channel, Behavior.Recency) and segment
groups over an imported segment and over other dimensional segments. Each
segment's endpoints are taken out with an export job and compared with what
is worked out here from the endpoints written; then the refusals.

    SLUICE_BIN=target/debug/sluice python tests/boto3/test_segments.py
"""

import gzip
import json
import math
import time
import unittest

from harness import Server

ROLE = "arn:aws:iam::123456789012:role/PinpointSegments"

COUNTRIES = ["US", "DE", "fr"]
PLATFORMS = ["ios", "Android", "web"]
# Seattle, Portland (~234 km away), Berlin.
PLACES = [(47.6062, -122.3321), (45.5152, -122.6784), (52.52, 13.405)]


def endpoint(i):
    """Endpoint i of 60: every field a dimension reads, spread over them."""
    e = {
        "Id": "ep-%02d" % i,
        "ChannelType": "EMAIL" if i % 3 else "SMS",
        "Address": ("p%d@example.com" % i) if i % 3 else "+1415555%04d" % i,
        "Demographic": {"Platform": PLATFORMS[i % 3], "AppVersion": "1.%d" % (i % 4)},
        "Location": {"Country": COUNTRIES[i % 3],
                     "Latitude": PLACES[(i // 3) % 3][0],
                     "Longitude": PLACES[(i // 3) % 3][1]},
        "Attributes": {"Team": ["red" if i % 2 else "blue", "team-%d" % (i % 5)],
                       "Joined": ["2026-0%d-15T12:00:00Z" % (1 + i % 6)]},
        "User": {"UserId": "u%d" % (i % 7),
                 "UserAttributes": {"Plan": ["gold" if i % 4 == 0 else "free"]}},
        "Metrics": {"spend": float(i)},
    }
    if i % 5 == 0:
        e["EffectiveDate"] = "2020-01-01T00:00:00Z"   # long inactive
    return e


ENDPOINTS = [endpoint(i) for i in range(60)]


def km(a, b):
    (la1, lo1), (la2, lo2) = a, b
    p1, p2 = math.radians(la1), math.radians(la2)
    dp, dl = math.radians(la2 - la1), math.radians(lo2 - lo1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def ids(pred, among=ENDPOINTS):
    return sorted(e["Id"] for e in among if pred(e))


def month(e):
    return int(e["Attributes"]["Joined"][0][5:7])


class Segments(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.pp = cls.server.client(service="pinpoint")
        cls.s3 = cls.server.client(service="s3")
        cls.s3.create_bucket(Bucket="seg-out")
        pp = cls.pp
        cls.app = pp.create_app(CreateApplicationRequest={"Name": "segs"})[
            "ApplicationResponse"]["Id"]
        for start in range(0, len(ENDPOINTS), 25):
            pp.update_endpoints_batch(ApplicationId=cls.app, EndpointBatchRequest={
                "Item": ENDPOINTS[start:start + 25]})
        # An imported segment: every fourth endpoint, by a CSV import job.
        rows = ["Id,ChannelType,Address"] + [
            "%s,%s,%s" % (e["Id"], e["ChannelType"], e["Address"]) for e in ENDPOINTS[::4]]
        cls.s3.put_object(Bucket="seg-out", Key="in/some.csv",
                          Body=("\n".join(rows) + "\n").encode())
        job = pp.create_import_job(ApplicationId=cls.app, ImportJobRequest={
            "Format": "CSV", "S3Url": "s3://seg-out/in/some.csv", "RoleArn": ROLE,
            "DefineSegment": True, "SegmentName": "imported"})["ImportJobResponse"]
        done = cls.wait(lambda: pp.get_import_job(ApplicationId=cls.app, JobId=job["Id"])[
            "ImportJobResponse"])
        assert done["JobStatus"] == "COMPLETED", done
        cls.imported = done["Definition"]["SegmentId"]
        cls.imported_ids = sorted(e["Id"] for e in ENDPOINTS[::4])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    @staticmethod
    def wait(get, timeout=60):
        deadline = time.time() + timeout
        while True:
            r = get()
            if r["JobStatus"] in ("COMPLETED", "FAILED"):
                return r
            assert time.time() < deadline, r
            time.sleep(0.1)

    def create(self, name, **definition):
        r = self.pp.create_segment(ApplicationId=self.app, WriteSegmentRequest=dict(
            Name=name, **definition))
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 201)
        return r["SegmentResponse"]

    def exported(self, segment):
        """The ids of a segment's endpoints, by an export job of it."""
        pp = self.pp
        job = pp.create_export_job(ApplicationId=self.app, ExportJobRequest={
            "S3UrlPrefix": "s3://seg-out/out/", "RoleArn": ROLE,
            "SegmentId": segment})["ExportJobResponse"]
        done = self.wait(lambda: pp.get_export_job(ApplicationId=self.app, JobId=job["Id"])[
            "ExportJobResponse"])
        self.assertEqual(done["JobStatus"], "COMPLETED", done)
        got = []
        listed = self.s3.list_objects_v2(Bucket="seg-out", Prefix="out/%s/" % job["Id"])
        for o in listed.get("Contents", []):
            body = self.s3.get_object(Bucket="seg-out", Key=o["Key"])["Body"].read()
            got += [json.loads(l)["Id"] for l in gzip.decompress(body).decode().splitlines()]
        self.assertEqual(done["TotalProcessed"], len(got))
        return sorted(got)

    def test_dimensions_choose_what_endpoints_carry(self):
        seattle = PLACES[0]
        cases = [
            ({"Demographic": {"Platform": {"Values": ["IOS", "web"]}}},
             lambda e: e["Demographic"]["Platform"].lower() in ("ios", "web")),
            ({"Demographic": {"Channel": {"DimensionType": "EXCLUSIVE", "Values": ["SMS"]},
                              "AppVersion": {"Values": ["1.1", "1.2"]}}},
             lambda e: e["ChannelType"] != "SMS" and e["Demographic"]["AppVersion"] in
             ("1.1", "1.2")),
            ({"Location": {"Country": {"Values": ["FR", "de"]}}},
             lambda e: e["Location"]["Country"].upper() in ("FR", "DE")),
            ({"Location": {"GPSPoint": {"Coordinates": {"Latitude": seattle[0],
                                                        "Longitude": seattle[1]},
                                        "RangeInKilometers": 250}}},
             lambda e: km(seattle, (e["Location"]["Latitude"],
                                    e["Location"]["Longitude"])) <= 250),
            ({"Attributes": {"Team": {"Values": ["red"]},
                             "Joined": {"AttributeType": "BEFORE",
                                        "Values": ["2026-03-01T00:00:00Z"]}}},
             lambda e: "red" in e["Attributes"]["Team"] and month(e) < 3),
            ({"Attributes": {"Team": {"AttributeType": "CONTAINS", "Values": ["-3", "-4"]}}},
             lambda e: any(t.endswith(("-3", "-4")) for t in e["Attributes"]["Team"])),
            ({"Attributes": {"Team": {"AttributeType": "EXCLUSIVE", "Values": ["blue"]},
                             "Joined": {"AttributeType": "BETWEEN",
                                        "Values": ["2026-02-01T00:00:00Z",
                                                   "2026-04-30T00:00:00Z"]}}},
             lambda e: "blue" not in e["Attributes"]["Team"] and 2 <= month(e) <= 4),
            ({"Attributes": {"Joined": {"AttributeType": "ON", "Values": ["2026-05-15"]}}},
             lambda e: month(e) == 5),
            ({"Attributes": {"Joined": {"AttributeType": "AFTER",
                                        "Values": ["2026-05-15T12:00:00Z"]}}},
             lambda e: month(e) > 5),
            ({"UserAttributes": {"Plan": {"Values": ["gold"]}},
              "Metrics": {"spend": {"ComparisonOperator": "GREATER_THAN_OR_EQUAL",
                                    "Value": 20}}},
             lambda e: e["User"]["UserAttributes"]["Plan"] == ["gold"]
             and e["Metrics"]["spend"] >= 20),
            ({"Metrics": {"spend": {"ComparisonOperator": "LESS_THAN", "Value": 7}}},
             lambda e: e["Metrics"]["spend"] < 7),
            ({"Behavior": {"Recency": {"Duration": "DAY_7", "RecencyType": "INACTIVE"}}},
             lambda e: "EffectiveDate" in e),
            ({"Behavior": {"Recency": {"Duration": "HR_24", "RecencyType": "ACTIVE"}}},
             lambda e: "EffectiveDate" not in e),
            ({}, lambda e: True),
        ]
        for dims, pred in cases:
            with self.subTest(dims=dims):
                seg = self.create("dims", Dimensions=dims)
                self.assertEqual((seg["SegmentType"], seg["Version"]), ("DIMENSIONAL", 1))
                self.assertNotIn("ImportDefinition", seg)
                self.assertEqual(seg.get("Dimensions", {}), dims)
                want = ids(pred)
                self.assertTrue(0 < len(want) < 60 or dims == {}, want)
                self.assertEqual(self.exported(seg["Id"]), want)

    def test_groups_over_imported_and_dimensional_segments(self):
        imported = [e for e in ENDPOINTS if e["Id"] in self.imported_ids]
        # An imported segment filtered by dimensions.
        seg = self.create("gold imports", SegmentGroups={
            "Include": "ALL",
            "Groups": [{"SourceSegments": [{"Id": self.imported, "Version": 1}],
                        "SourceType": "ANY", "Type": "ANY",
                        "Dimensions": [
                            {"UserAttributes": {"Plan": {"Values": ["gold"]}}},
                            {"Location": {"Country": {"Values": ["DE"]}}}]}]})
        self.assertEqual(seg["SegmentGroups"]["Groups"][0]["SourceSegments"],
                         [{"Id": self.imported, "Version": 1}])
        want = ids(lambda e: e["User"]["UserAttributes"]["Plan"] == ["gold"]
                   or e["Location"]["Country"] == "DE", imported)
        self.assertEqual(self.exported(seg["Id"]), want)
        # Two dimensional segments, both (ALL) or either (ANY), then none
        # of the group (Include NONE).
        cheap = self.create("cheap", Dimensions={
            "Metrics": {"spend": {"ComparisonOperator": "LESS_THAN", "Value": 30}}})["Id"]
        red = self.create("red", Dimensions={"Attributes": {"Team": {"Values": ["red"]}}})["Id"]
        is_cheap = lambda e: e["Metrics"]["spend"] < 30
        is_red = lambda e: "red" in e["Attributes"]["Team"]
        for source_type, include, pred in [
                ("ALL", "ALL", lambda e: is_cheap(e) and is_red(e)),
                ("ANY", "ALL", lambda e: is_cheap(e) or is_red(e)),
                ("ANY", "NONE", lambda e: not (is_cheap(e) or is_red(e))),
                ("NONE", "ALL", lambda e: not (is_cheap(e) or is_red(e)))]:
            with self.subTest(source_type=source_type, include=include):
                seg = self.create("both", SegmentGroups={"Include": include, "Groups": [{
                    "SourceSegments": [{"Id": cheap}, {"Id": red}],
                    "SourceType": source_type}]})
                self.assertEqual(self.exported(seg["Id"]), ids(pred))
        # Dimensions NONE of a group: cheap endpoints not on SMS.
        seg = self.create("cheap mail", SegmentGroups={"Groups": [{
            "SourceSegments": [{"Id": cheap}], "Type": "NONE",
            "Dimensions": [{"Demographic": {"Channel": {"Values": ["SMS"]}}}]}]})
        self.assertEqual(self.exported(seg["Id"]),
                         ids(lambda e: is_cheap(e) and e["ChannelType"] != "SMS"))
        # A segment on a segment on a segment.
        top = self.create("top", SegmentGroups={"Groups": [{
            "SourceSegments": [{"Id": seg["Id"]}],
            "Dimensions": [{"Demographic": {"Platform": {"Values": ["ios"]}}}]}]})
        self.assertEqual(self.exported(top["Id"]), ids(
            lambda e: is_cheap(e) and e["ChannelType"] != "SMS"
            and e["Demographic"]["Platform"] == "ios"))

    def test_update_versions_and_delete(self):
        pp, app = self.pp, self.app
        seg = self.create("v", Dimensions={"Location": {"Country": {"Values": ["US"]}}},
                          tags={"team": "growth"})
        self.assertEqual(seg["tags"], {"team": "growth"})
        time.sleep(0.01)
        up = pp.update_segment(ApplicationId=app, SegmentId=seg["Id"], WriteSegmentRequest={
            "Name": "v2", "Dimensions": {"Location": {"Country": {"Values": ["DE"]}}}})[
            "SegmentResponse"]
        self.assertEqual((up["Version"], up["Name"], up["CreationDate"]),
                         (2, "v2", seg["CreationDate"]))
        self.assertGreater(up["LastModifiedDate"], seg["LastModifiedDate"])
        self.assertEqual(up["Dimensions"], {"Location": {"Country": {"Values": ["DE"]}}})
        self.assertEqual(self.exported(seg["Id"]),
                         ids(lambda e: e["Location"]["Country"] == "DE"))
        # A name alone keeps the definition, and makes a version.
        up = pp.update_segment(ApplicationId=app, SegmentId=seg["Id"],
                               WriteSegmentRequest={"Name": "v3"})["SegmentResponse"]
        self.assertEqual((up["Version"], up["Name"]), (3, "v3"))
        self.assertEqual(up["Dimensions"], {"Location": {"Country": {"Values": ["DE"]}}})
        got = pp.get_segment(ApplicationId=app, SegmentId=seg["Id"])["SegmentResponse"]
        self.assertEqual(got, up)
        listed = pp.get_segments(ApplicationId=app)["SegmentsResponse"]["Item"]
        by_id = {s["Id"]: s for s in listed}
        self.assertEqual(by_id[seg["Id"]], up)
        self.assertEqual(by_id[self.imported]["SegmentType"], "IMPORT")
        # An imported segment takes a new name, not dimensions.
        ren = pp.update_segment(ApplicationId=app, SegmentId=self.imported,
                                WriteSegmentRequest={"Name": "imported"})["SegmentResponse"]
        self.assertEqual((ren["SegmentType"], ren["ImportDefinition"]["Size"]),
                         ("IMPORT", len(self.imported_ids)))
        # A base segment in use cannot go; the one on it can, then it.
        on = self.create("on", SegmentGroups={"Groups": [{"SourceSegments": [
            {"Id": seg["Id"]}]}]})
        with self.assertRaises(pp.exceptions.BadRequestException) as e:
            pp.delete_segment(ApplicationId=app, SegmentId=seg["Id"])
        self.assertIn("built on segment %s" % seg["Id"], str(e.exception))
        gone = pp.delete_segment(ApplicationId=app, SegmentId=on["Id"])["SegmentResponse"]
        self.assertEqual(gone["Id"], on["Id"])
        gone = pp.delete_segment(ApplicationId=app, SegmentId=seg["Id"])["SegmentResponse"]
        self.assertEqual(gone, got)
        for call in (pp.get_segment, pp.delete_segment):
            with self.assertRaises(pp.exceptions.NotFoundException):
                call(ApplicationId=app, SegmentId=seg["Id"])
        listed = pp.get_segments(ApplicationId=app)["SegmentsResponse"]["Item"]
        self.assertNotIn(seg["Id"], [s["Id"] for s in listed])
        # Deleting an imported segment keeps its endpoints.
        extra = pp.create_import_job(ApplicationId=app, ImportJobRequest={
            "Format": "CSV", "S3Url": "s3://seg-out/in/some.csv", "RoleArn": ROLE,
            "DefineSegment": True})["ImportJobResponse"]
        done = self.wait(lambda: pp.get_import_job(ApplicationId=app, JobId=extra["Id"])[
            "ImportJobResponse"])
        pp.delete_segment(ApplicationId=app, SegmentId=done["Definition"]["SegmentId"])
        self.assertEqual(pp.get_endpoint(ApplicationId=app, EndpointId="ep-00")[
            "EndpointResponse"]["Id"], "ep-00")

    def test_refusals(self):
        pp, app = self.pp, self.app
        bad = pp.exceptions.BadRequestException
        missing = pp.exceptions.NotFoundException
        cases = [
            (bad, {"Name": "x", "Dimensions": {}, "SegmentGroups": {}}, "not both"),
            (bad, {"Name": "x", "Dimensions": {"Demographic": {"Channel": {
                "Values": ["FAX"]}}}}, "not a channel type"),
            (bad, {"Name": "x", "Dimensions": {"Demographic": {"DeviceType": {
                "Values": ["PHONE"]}}}}, "no device type"),
            (bad, {"Name": "x", "Dimensions": {"Attributes": {"Joined": {
                "AttributeType": "BEFORE", "Values": ["soon"]}}}},
             "Dimensions.Attributes.Joined.Values: \"soon\" is not an ISO 8601"),
            (bad, {"Name": "x", "Dimensions": {"Attributes": {"Joined": {
                "AttributeType": "SOMETIMES", "Values": ["a"]}}}}, "SOMETIMES"),
            (bad, {"Name": "x", "Dimensions": {"Metrics": {"spend": {
                "ComparisonOperator": "ABOUT", "Value": 1}}}}, "ComparisonOperator"),
            (bad, {"Name": "x", "Dimensions": {"Location": {"GPSPoint": {
                "Coordinates": {"Latitude": 0, "Longitude": 0}}}}}, "RangeInKilometers"),
            (bad, {"Name": "x", "SegmentGroups": {"Groups": [{}, {}]}},
             "at most one segment group"),
            (missing, {"Name": "x", "SegmentGroups": {"Groups": [{"SourceSegments": [
                {"Id": "0" * 32}]}]}}, "Segment %s" % ("0" * 32)),
            (bad, {"Name": "x", "SegmentGroups": {"Groups": [{"SourceSegments": [
                {"Id": self.imported, "Version": 7}]}]}}, "version"),
            (bad, {"Dimensions": {}}, "Name is required"),
        ]
        for exc, req, says in cases:
            with self.subTest(req=req):
                with self.assertRaises(exc) as e:
                    pp.create_segment(ApplicationId=app, WriteSegmentRequest=req)
                self.assertIn(says, str(e.exception))
        # Two base segments where one is imported.
        other = self.create("o", Dimensions={})["Id"]
        with self.assertRaises(bad) as e:
            self.create("x", SegmentGroups={"Groups": [{"SourceSegments": [
                {"Id": self.imported}, {"Id": other}]}]})
        self.assertIn("only base segment", str(e.exception))
        # A segment built on itself, through another.
        a = self.create("a", Dimensions={})["Id"]
        b = self.create("b", SegmentGroups={"Groups": [{"SourceSegments": [{"Id": a}]}]})["Id"]
        with self.assertRaises(bad) as e:
            pp.update_segment(ApplicationId=app, SegmentId=a, WriteSegmentRequest={
                "SegmentGroups": {"Groups": [{"SourceSegments": [{"Id": b}]}]}})
        self.assertIn("built on itself", str(e.exception))
        # An imported segment is not redefined, and a dimensional one is
        # not imported into.
        with self.assertRaises(bad) as e:
            pp.update_segment(ApplicationId=app, SegmentId=self.imported,
                              WriteSegmentRequest={"Dimensions": {}})
        self.assertIn("imported segment", str(e.exception))
        with self.assertRaises(bad) as e:
            pp.create_import_job(ApplicationId=app, ImportJobRequest={
                "Format": "CSV", "S3Url": "s3://seg-out/in/some.csv", "RoleArn": ROLE,
                "SegmentId": a})
        self.assertIn("dimensional segment", str(e.exception))
        for call, kw in [(pp.create_segment, {"WriteSegmentRequest": {"Name": "x"}}),
                         (pp.update_segment, {"SegmentId": a, "WriteSegmentRequest": {}}),
                         (pp.delete_segment, {"SegmentId": a})]:
            with self.assertRaises(missing):
                call(ApplicationId="f" * 32, **kw)
        with self.assertRaises(missing):
            pp.update_segment(ApplicationId=app, SegmentId="0" * 32, WriteSegmentRequest={})


if __name__ == "__main__":
    unittest.main(verbosity=2)
