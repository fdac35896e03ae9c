"""S3 on the server's port, driven by boto3's S3 client and the aws CLI.

Buckets, objects (ranges, copies, checksums the SDK sends by default, a
wrong Content-MD5), listings with prefixes, delimiters and pages, batch
deletes, presigned GET and PUT URLs, virtual-host style addressing,
multipart uploads (upload_file above the threshold, an aborted one, parts
out of order) and S3's XML errors; then `aws s3 mb/cp/ls/sync/rm/rb` with a
file over 8 MB each way; then a Pinpoint import job reading the file that
boto3 put, which is what the S3 front is for.

    SLUICE_BIN=target/debug/sluice python tests/boto3/test_s3.py
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
from boto3.s3.transfer import TransferConfig

from harness import Server

MiB = 1 << 20


def blob(n, seed):
    """n bytes that differ from part to part (a misplaced part shows)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


class S3Front(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.s3 = cls.server.client(service="s3")
        cls.tmp = tempfile.mkdtemp(prefix="sluice-s3-")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def error_code(self, ctx):
        return ctx.exception.response["Error"]["Code"]

    def test_1_buckets(self):
        s3 = self.s3
        s3.create_bucket(Bucket="inbox")
        s3.head_bucket(Bucket="inbox")
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        self.assertIn("inbox", names)
        with self.assertRaises(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket="inbox")
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.head_bucket(Bucket="no-such-bucket")
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.create_bucket(Bucket="Bad_Name")
        self.assertEqual(self.error_code(e), "InvalidBucketName")
        s3.create_bucket(Bucket="short-lived")
        s3.put_object(Bucket="short-lived", Key="x", Body=b"x")
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.delete_bucket(Bucket="short-lived")
        self.assertEqual(self.error_code(e), "BucketNotEmpty")
        s3.delete_object(Bucket="short-lived", Key="x")
        s3.delete_bucket(Bucket="short-lived")
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        self.assertNotIn("short-lived", names)
        with self.assertRaises(s3.exceptions.NoSuchBucket):
            s3.delete_bucket(Bucket="short-lived")

    def test_2_objects(self):
        s3 = self.s3
        body = blob(100_000, 1)
        put = s3.put_object(Bucket="inbox", Key="data/a.bin", Body=body,
                            ContentType="application/octet-stream")
        self.assertTrue(put["ETag"])
        got = s3.get_object(Bucket="inbox", Key="data/a.bin")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(got["ContentLength"], len(body))
        self.assertEqual(got["ETag"], put["ETag"])
        part = s3.get_object(Bucket="inbox", Key="data/a.bin", Range="bytes=10-19")
        self.assertEqual(part["Body"].read(), body[10:20])
        self.assertEqual(part["ContentRange"], "bytes 10-19/100000")
        tail = s3.get_object(Bucket="inbox", Key="data/a.bin", Range="bytes=-5")
        self.assertEqual(tail["Body"].read(), body[-5:])
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.get_object(Bucket="inbox", Key="data/a.bin", Range="bytes=200000-")
        self.assertEqual(self.error_code(e), "InvalidRange")
        head = s3.head_object(Bucket="inbox", Key="data/a.bin")
        self.assertEqual(head["ContentLength"], len(body))
        with self.assertRaises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="inbox", Key="data/missing")
        with self.assertRaises(s3.exceptions.NoSuchBucket):
            s3.get_object(Bucket="nope", Key="x")
        # Checksums: the SDK's default (CRC32) and asked-for ones pass.
        # (CRC32C and CRC64NVME need botocore[crt].)
        for algo in ("CRC32", "SHA256", "SHA1"):
            s3.put_object(Bucket="inbox", Key="sum/" + algo, Body=b"checked " + algo.encode(),
                          ChecksumAlgorithm=algo)
            self.assertEqual(s3.get_object(Bucket="inbox", Key="sum/" + algo)["Body"].read(),
                             b"checked " + algo.encode())
        # As the SDKs send over TLS: an aws-chunked body, its CRC32 in a
        # trailer (botocore does this only for https; told to here).
        trailing = self.server.client(service="s3")

        def to_trailer(context, **_):
            context["checksum"]["request_algorithm"]["in"] = "trailer"
        trailing.meta.events.register("before-call.s3.PutObject", to_trailer)
        chunked = blob(300_000, 4)
        trailing.put_object(Bucket="inbox", Key="sum/trailer", Body=chunked)
        self.assertEqual(s3.get_object(Bucket="inbox", Key="sum/trailer")["Body"].read(), chunked)
        # A checksum that does not match is refused and leaves nothing.
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.put_object(Bucket="inbox", Key="sum/wrong", Body=b"hello", ChecksumCRC32="AAAAAA==")
        self.assertEqual(self.error_code(e), "BadDigest")
        with self.assertRaises(s3.exceptions.ClientError):
            s3.head_object(Bucket="inbox", Key="sum/wrong")
        # A wrong Content-MD5 is refused and leaves nothing.
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.put_object(Bucket="inbox", Key="data/bad-md5", Body=b"hello",
                          ContentMD5="XrY7u+Ae7tCTyyK7j1rNww==")
        self.assertEqual(self.error_code(e), "BadDigest")
        with self.assertRaises(s3.exceptions.ClientError):
            s3.head_object(Bucket="inbox", Key="data/bad-md5")
        # Copies.
        s3.copy_object(Bucket="inbox", Key="copies/a.bin",
                       CopySource={"Bucket": "inbox", "Key": "data/a.bin"})
        self.assertEqual(s3.get_object(Bucket="inbox", Key="copies/a.bin")["Body"].read(), body)
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.copy_object(Bucket="inbox", Key="copies/b",
                           CopySource={"Bucket": "inbox", "Key": "data/none"})
        self.assertEqual(self.error_code(e), "NoSuchKey")

    def test_3_listings(self):
        s3 = self.s3
        s3.create_bucket(Bucket="lists")
        keys = ["a.csv", "in/1.csv", "in/2.csv", "in/deep/3.csv", "out/1.csv", "z x+y.csv"]
        for k in keys:
            s3.put_object(Bucket="lists", Key=k, Body=k.encode())
        r = s3.list_objects_v2(Bucket="lists")
        self.assertEqual([o["Key"] for o in r["Contents"]], keys)
        self.assertEqual(r["Contents"][1]["Size"], len("in/1.csv"))
        r = s3.list_objects_v2(Bucket="lists", Delimiter="/")
        self.assertEqual([o["Key"] for o in r["Contents"]], ["a.csv", "z x+y.csv"])
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["in/", "out/"])
        r = s3.list_objects_v2(Bucket="lists", Prefix="in/", Delimiter="/")
        self.assertEqual([o["Key"] for o in r["Contents"]], ["in/1.csv", "in/2.csv"])
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["in/deep/"])
        seen = []
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket="lists", PaginationConfig={"PageSize": 2})
        for p in pages:
            self.assertLessEqual(p["KeyCount"], 2)
            seen += [o["Key"] for o in p.get("Contents", [])]
        self.assertEqual(seen, keys)
        seen = []
        for p in s3.get_paginator("list_objects").paginate(
                Bucket="lists", PaginationConfig={"PageSize": 4}):
            seen += [o["Key"] for o in p.get("Contents", [])]
        self.assertEqual(seen, keys)
        r = s3.delete_objects(Bucket="lists", Delete={
            "Objects": [{"Key": "a.csv"}, {"Key": "in/1.csv"}, {"Key": "never-there"}]})
        self.assertEqual(sorted(d["Key"] for d in r["Deleted"]),
                         ["a.csv", "in/1.csv", "never-there"])
        r = s3.list_objects_v2(Bucket="lists")
        self.assertEqual([o["Key"] for o in r["Contents"]], keys[2:])
        with self.assertRaises(s3.exceptions.NoSuchBucket):
            s3.list_objects_v2(Bucket="no-such-bucket")

    def test_4_presigned_urls(self):
        # boto3's default for S3 presigned URLs is SigV2 query auth; both.
        for version, s3 in [("v2", self.s3),
                            ("v4", self.server.client(service="s3", signature_version="s3v4"))]:
            key = "p/up-%s.txt" % version
            url = s3.generate_presigned_url("put_object", Params={"Bucket": "inbox", "Key": key},
                                            ExpiresIn=300)
            # No Content-Type (urllib would add a form's): SigV2 signs it,
            # as S3 does.
            req = urllib.request.Request(url, data=b"presigned body", method="PUT",
                                         headers={"Content-Type": ""})
            with urllib.request.urlopen(req) as r:
                self.assertEqual(r.status, 200)
            url = s3.generate_presigned_url("get_object", Params={"Bucket": "inbox", "Key": key},
                                            ExpiresIn=300)
            with urllib.request.urlopen(url) as r:
                self.assertEqual(r.read(), b"presigned body")
            # A refused PUT whose client sends the body before it reads the
            # answer (urllib) gets the answer, not a broken pipe.
            put = s3.generate_presigned_url("put_object", Params={"Bucket": "inbox", "Key": key},
                                            ExpiresIn=300).replace(key, "p/other.txt")
            req = urllib.request.Request(put, data=b"x" * (8 * MiB), method="PUT",
                                         headers={"Content-Type": ""})
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req)
            self.assertEqual(e.exception.code, 403)
            self.assertIn(b"SignatureDoesNotMatch", e.exception.read())
            # Tampered: another key under the same signature.
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url.replace(key, "data/a.bin"))
            self.assertEqual(e.exception.code, 403)
            self.assertIn(b"SignatureDoesNotMatch", e.exception.read())
        # Signed by a key the server does not know.
        other = self.server.client(service="s3", key_id="AKIANOTAKEY", secret="x" * 40)
        with self.assertRaises(other.exceptions.ClientError) as e:
            other.list_buckets()
        self.assertEqual(self.error_code(e), "InvalidAccessKeyId")

    def test_5_virtual_host_style(self):
        # bucket.localhost: the host names the bucket. Sent to 127.0.0.1
        # with that Host header, as a resolver that knows *.localhost would.
        port = self.server.url.rsplit(":", 1)[1]
        host = "inbox.localhost:%s" % port
        creds = botocore.credentials.Credentials(self.server.key_id, self.server.secret)
        req = botocore.awsrequest.AWSRequest(
            method="GET", url="http://%s/data/a.bin" % host, headers={"Host": host})
        botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
        plain = urllib.request.Request("http://127.0.0.1:%s/data/a.bin" % port,
                                       headers=dict(req.headers.items()))
        with urllib.request.urlopen(plain) as r:
            self.assertEqual(r.read(), blob(100_000, 1))

    def test_6_multipart(self):
        s3 = self.s3
        path = os.path.join(self.tmp, "big.bin")
        data = blob(21 * MiB + 12345, 2)
        with open(path, "wb") as f:
            f.write(data)
        cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                             max_concurrency=4)
        s3.upload_file(path, "inbox", "big/file.bin", Config=cfg)
        head = s3.head_object(Bucket="inbox", Key="big/file.bin")
        self.assertEqual(head["ContentLength"], len(data))
        back = os.path.join(self.tmp, "back.bin")
        s3.download_file("inbox", "big/file.bin", back, Config=cfg)
        with open(back, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        # By hand: parts, their listing, the S3 ETag, order and size rules.
        up = s3.create_multipart_upload(Bucket="inbox", Key="big/manual.bin")["UploadId"]
        p1 = s3.upload_part(Bucket="inbox", Key="big/manual.bin", UploadId=up, PartNumber=1,
                            Body=data[:5 * MiB])
        p2 = s3.upload_part(Bucket="inbox", Key="big/manual.bin", UploadId=up, PartNumber=2,
                            Body=b"tail")
        listed = s3.list_parts(Bucket="inbox", Key="big/manual.bin", UploadId=up)["Parts"]
        self.assertEqual([(p["PartNumber"], p["Size"], p["ETag"]) for p in listed],
                         [(1, 5 * MiB, p1["ETag"]), (2, 4, p2["ETag"])])
        self.assertNotEqual(p1["ETag"], p2["ETag"])
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.complete_multipart_upload(
                Bucket="inbox", Key="big/manual.bin", UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2["ETag"]},
                                           {"PartNumber": 1, "ETag": p1["ETag"]}]})
        self.assertEqual(self.error_code(e), "InvalidPartOrder")
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.complete_multipart_upload(
                Bucket="inbox", Key="big/manual.bin", UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"%s"' % ("0" * 32)}]})
        self.assertEqual(self.error_code(e), "InvalidPart")
        done = s3.complete_multipart_upload(
            Bucket="inbox", Key="big/manual.bin", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                       {"PartNumber": 2, "ETag": p2["ETag"]}]})
        self.assertRegex(done["ETag"], r'^"[0-9a-f]{32}-2"$')
        got = s3.get_object(Bucket="inbox", Key="big/manual.bin")["Body"].read()
        self.assertEqual(got, data[:5 * MiB] + b"tail")
        # Small parts but the last are refused.
        up = s3.create_multipart_upload(Bucket="inbox", Key="big/small.bin")["UploadId"]
        a = s3.upload_part(Bucket="inbox", Key="big/small.bin", UploadId=up, PartNumber=1,
                           Body=b"a")
        b = s3.upload_part(Bucket="inbox", Key="big/small.bin", UploadId=up, PartNumber=2,
                           Body=b"b")
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.complete_multipart_upload(
                Bucket="inbox", Key="big/small.bin", UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": a["ETag"]},
                                           {"PartNumber": 2, "ETag": b["ETag"]}]})
        self.assertEqual(self.error_code(e), "EntityTooSmall")
        # Aborted: gone, and no object.
        s3.abort_multipart_upload(Bucket="inbox", Key="big/small.bin", UploadId=up)
        with self.assertRaises(s3.exceptions.NoSuchUpload):
            s3.list_parts(Bucket="inbox", Key="big/small.bin", UploadId=up)
        with self.assertRaises(s3.exceptions.ClientError):
            s3.head_object(Bucket="inbox", Key="big/small.bin")
        with self.assertRaises(s3.exceptions.NoSuchUpload):
            s3.upload_part(Bucket="inbox", Key="big/small.bin", UploadId="f" * 32,
                           PartNumber=1, Body=b"x")

    def test_6b_parts_in_any_order_numbering_and_size(self):
        """Parts land in one spool file at their slots when they can; every
        other shape (numbers with gaps, a part sent again, unaligned or
        uneven sizes, the short last part first) is assembled as well."""
        s3 = self.s3
        five = 5 * MiB
        data = blob(3 * five + 777, 6)
        pieces = [data[:five], data[five:2 * five], data[2 * five:3 * five], data[3 * five:]]

        def upload(key, parts, order=None):
            up = s3.create_multipart_upload(Bucket="inbox", Key=key)["UploadId"]
            tags = {}
            for n in order or sorted(parts):
                tags[n] = s3.upload_part(Bucket="inbox", Key=key, UploadId=up, PartNumber=n,
                                         Body=parts[n])["ETag"]
            return up, tags

        def complete(key, up, tags):
            s3.complete_multipart_upload(
                Bucket="inbox", Key=key, UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": t}
                                           for n, t in sorted(tags.items())]})
            return s3.get_object(Bucket="inbox", Key=key)["Body"].read()

        # Out of order, the short last part first.
        parts = {n + 1: p for n, p in enumerate(pieces)}
        up, tags = upload("lay/order.bin", parts, order=[4, 3, 1, 2])
        self.assertEqual(complete("lay/order.bin", up, tags), data)
        # A part sent again: the newer one is the part, the older ETag is gone.
        up, tags = upload("lay/again.bin", parts)
        other = bytes(reversed(pieces[1]))
        old = tags[2]
        tags[2] = s3.upload_part(Bucket="inbox", Key="lay/again.bin", UploadId=up, PartNumber=2,
                                 Body=other)["ETag"]
        self.assertNotEqual(old, tags[2])
        listed = s3.list_parts(Bucket="inbox", Key="lay/again.bin", UploadId=up)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"]) for p in listed], sorted(tags.items()))
        with self.assertRaises(s3.exceptions.ClientError) as e:
            complete("lay/again.bin", up, {**tags, 2: old})
        self.assertEqual(self.error_code(e), "InvalidPart")
        self.assertEqual(complete("lay/again.bin", up, tags),
                         pieces[0] + other + pieces[2] + pieces[3])
        # Numbers with gaps.
        gappy = {1: pieces[0], 3: pieces[1], 7: pieces[2] + pieces[3]}
        up, tags = upload("lay/gaps.bin", gappy)
        self.assertEqual(complete("lay/gaps.bin", up, tags), data)
        # Sizes that are not whole blocks, and parts of uneven sizes.
        uneven = {1: data[:five + 1], 2: data[five + 1:3 * five], 3: data[3 * five:]}
        up, tags = upload("lay/uneven.bin", uneven)
        self.assertEqual(complete("lay/uneven.bin", up, tags), data)
        # A last part larger than the others.
        big_last = {1: data[:five], 2: data[five:]}
        up, tags = upload("lay/big-last.bin", big_last)
        self.assertEqual(complete("lay/big-last.bin", up, tags), data)
        # Completed with fewer parts than were sent: only those.
        up, tags = upload("lay/fewer.bin", parts)
        del tags[4], tags[3]
        self.assertEqual(complete("lay/fewer.bin", up, tags), data[:2 * five])

    def test_7_the_aws_cli(self):
        aws = shutil.which("aws")
        self.assertIsNotNone(aws, "the aws CLI is installed by tests/boto3/venv.sh")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.server.key_id,
                   AWS_SECRET_ACCESS_KEY=self.server.secret,
                   AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=self.server.url)

        def run(*args):
            out = subprocess.run([aws, "s3", *args], env=env, capture_output=True,
                                 text=True, timeout=300)
            self.assertEqual(out.returncode, 0, "aws s3 %s: %s" % (" ".join(args), out.stderr))
            return out.stdout

        run("mb", "s3://cli")
        big = os.path.join(self.tmp, "cli-big.bin")
        data = blob(12 * MiB + 7, 3)   # over the CLI's 8 MB multipart threshold
        with open(big, "wb") as f:
            f.write(data)
        run("cp", big, "s3://cli/in/big.bin")
        back = os.path.join(self.tmp, "cli-back.bin")
        run("cp", "s3://cli/in/big.bin", back)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), data)
        tree = os.path.join(self.tmp, "tree")
        os.makedirs(os.path.join(tree, "sub"))
        for name, text in [("a.csv", "a\n"), ("sub/b.csv", "b\n"), ("sub/c d.csv", "c\n")]:
            with open(os.path.join(tree, name), "w") as f:
                f.write(text)
        run("sync", tree, "s3://cli/tree/")
        listing = run("ls", "--recursive", "s3://cli/")
        for key in ("in/big.bin", "tree/a.csv", "tree/sub/b.csv", "tree/sub/c d.csv"):
            self.assertIn(key, listing)
        self.assertIn("PRE in/", run("ls", "s3://cli/"))
        # A second sync has nothing to do.
        self.assertEqual(run("sync", tree, "s3://cli/tree/").strip(), "")
        # S3 keys that a folder cannot name as they are keep their keys.
        small = os.path.join(tree, "a.csv")
        run("cp", small, "s3://cli//x.csv")
        run("cp", small, "s3://cli/odd/../dots.csv")
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket="cli")["Contents"]]
        self.assertIn("/x.csv", keys)
        self.assertIn("odd/../dots.csv", keys)
        self.assertNotIn("x.csv", keys)
        self.assertNotIn("dots.csv", keys)
        run("cp", "s3://cli//x.csv", os.path.join(self.tmp, "x-back.csv"))
        with open(os.path.join(self.tmp, "x-back.csv")) as f:
            self.assertEqual(f.read(), "a\n")
        run("rm", "--recursive", "s3://cli/")
        self.assertEqual(run("ls", "--recursive", "s3://cli/").strip(), "")
        run("rb", "s3://cli")
        self.assertNotIn("cli", [b["Name"] for b in self.s3.list_buckets()["Buckets"]])

    def test_8_an_import_job_reads_what_boto3_put(self):
        s3 = self.s3
        s3.create_bucket(Bucket="endpoints")
        s3.put_object(Bucket="endpoints", Key="in/e.csv",
                      Body=b"ChannelType,Address,User.UserId\n"
                           b"EMAIL,ann@example.com,u1\nEMAIL,bob@example.com,u2\n")
        pp = self.server.client(service="pinpoint")
        app = pp.create_app(CreateApplicationRequest={"Name": "s3"})["ApplicationResponse"]["Id"]

        def imported(url):
            job = pp.create_import_job(ApplicationId=app, ImportJobRequest={
                "Format": "CSV", "S3Url": url,
                "RoleArn": "arn:aws:iam::123456789012:role/PinpointImport"})["ImportJobResponse"]
            deadline = time.time() + 60
            while True:
                r = pp.get_import_job(ApplicationId=app, JobId=job["Id"])["ImportJobResponse"]
                if r["JobStatus"] in ("COMPLETED", "FAILED"):
                    return r
                self.assertLess(time.time(), deadline, r)
                time.sleep(0.1)
        r = imported("s3://endpoints/in/")
        self.assertEqual(r["JobStatus"], "COMPLETED", r)
        self.assertEqual(r["TotalProcessed"], 2, r)
        self.assertEqual(r["FailedPieces"], 0, r)
        # s3://endpoints//x.csv is the key "/x.csv", not "x.csv".
        s3.put_object(Bucket="endpoints", Key="/x.csv",
                      Body=b"ChannelType,Address,User.UserId\nEMAIL,cy@example.com,u3\n")
        s3.put_object(Bucket="endpoints", Key="x.csv", Body=b"not,this\n")
        r = imported("s3://endpoints//x.csv")
        self.assertEqual((r["JobStatus"], r["TotalProcessed"], r["FailedPieces"]),
                         ("COMPLETED", 1, 0), r)

    def test_9_signed_for_another_region(self):
        import boto3
        from botocore.config import Config

        def client(service):
            return boto3.client(service, endpoint_url=self.server.url, region_name="eu-west-1",
                                aws_access_key_id=self.server.key_id,
                                aws_secret_access_key=self.server.secret,
                                config=Config(retries={"max_attempts": 1}))
        s3 = client("s3")
        with self.assertRaises(s3.exceptions.ClientError) as e:
            s3.list_buckets()
        self.assertEqual(self.error_code(e), "AuthorizationHeaderMalformed")
        self.assertIn("expecting 'us-east-1'", e.exception.response["Error"]["Message"])
        cp = client("customer-profiles")
        with self.assertRaises(cp.exceptions.ClientError) as e:
            cp.list_domains()
        self.assertEqual(self.error_code(e), "InvalidSignatureException")


class Operations(unittest.TestCase):
    def test_flags_from_the_environment_and_the_health_check(self):
        import json
        from harness import sluice_bin
        tmp = tempfile.mkdtemp(prefix="sluice-env-")
        data = os.path.join(tmp, "data")
        env = dict(os.environ, SLUICE_LISTEN="127.0.0.1:0", SLUICE_DATA_DIR=data,
                   SLUICE_MAX_JOBS="0", SLUICE_THREADS="1", SLUICE_LOG_FORMAT="json")
        log_path = os.path.join(tmp, "serve.log")
        log = open(log_path, "w")
        proc = subprocess.Popen([sluice_bin(), "serve"], env=env, stdout=subprocess.PIPE,
                                stderr=log, text=True)
        try:
            line = proc.stdout.readline()
            self.assertIn("listening on http://127.0.0.1:", line)
            url = line.split("listening on ", 1)[1].strip()
            self.assertTrue(os.path.isfile(os.path.join(data, "credentials")))
            with urllib.request.urlopen(url + "/_sluice/health") as r:
                self.assertEqual(r.status, 200)
                health = json.loads(r.read())
                self.assertTrue(r.headers["x-amz-request-id"])
            self.assertEqual(health["status"], "ok")
            self.assertIn(data, health["store"])
            self.assertRegex(health["version"], r"^\d+\.\d+\.\d+")
            # A log line per request, JSON here: who, what, how it went.
            import boto3
            import configparser
            creds = configparser.ConfigParser()
            creds.read(os.path.join(data, "credentials"))
            key = creds["default"]["aws_access_key_id"]
            s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=key,
                              aws_secret_access_key=creds["default"]["aws_secret_access_key"])
            listed = s3.list_buckets()
            rid = listed["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
            with self.assertRaises(s3.exceptions.NoSuchBucket):
                s3.list_objects_v2(Bucket="nothing-here")
            time.sleep(0.3)
            with open(log_path) as f:
                lines = [json.loads(line) for line in f if line.startswith("{")]
            requests = [line for line in lines if line.get("target") == "sluice::request"]
            mine = [r for r in requests if r.get("request_id") == rid]
            self.assertEqual(len(mine), 1, requests)
            self.assertEqual((mine[0]["service"], mine[0]["operation"], mine[0]["status"],
                              mine[0]["key"]), ("s3", "ListBuckets", 200, key), mine[0])
            for field in ("account", "bytes_in", "bytes_out", "latency_ms"):
                self.assertIn(field, mine[0])
            missing = [r for r in requests if r.get("operation") == "ListObjectsV2"]
            self.assertEqual([r["status"] for r in missing], [404], requests)
            health_lines = [r for r in requests if r.get("operation") == "Health"]
            self.assertEqual(health_lines[0]["key"], "-")
        finally:
            proc.terminate()
            proc.wait()
            proc.stdout.close()
            log.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
