"""AWS Import/Export jobs against `sluice serve`, driven by boto3 (the query
protocol: form-encoded POSTs, XML answers, SigV4 as `IngestionService`).

An Import job (validated first, then created) runs a device folder into a
bucket with `sluice importexport run`; GetStatus shows it complete and the
log object is there. An Export job of that bucket onto a fresh folder gives
back the device's files byte for byte. Then every exception of the model
through boto3, ListJobs paging, CancelJob, UpdateJob and GetShippingLabel,
the quota, and an import into buckets on moto's S3 server, where the objects
keep their Content-Type and other attributes.

    SLUICE_BIN=target/debug/sluice python tests/boto3/test_importexport_jobs.py
"""

import base64
import hashlib
import hmac
import os
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

import botocore
from botocore.config import Config

from harness import Moto, Server, sluice_bin

KEYS = {"AKIDOWNER0000000001": "owner-secret/abc+def",
        "AKIDOTHER0000000002": "other-secret"}
OWNER, OTHER = list(KEYS)

ADDRESS = """returnAddress:
    name: Jane Roe
    company: Example Corp.
    street1: 123 Any Street
    city: Anytown
    stateOrProvince: WA
    postalCode: 91011-1111
    phoneNumber: 206-555-1111
    country: USA
"""


def import_manifest(bucket="photos", extra="", key=OWNER):
    return ("manifestVersion: 2.0\r\ngenerator: a test\r\naccessKeyId: %s\r\n"
            "deviceId: 49382\r\neraseDevice: yes\r\nbucket: %s\r\n%s" % (key, bucket, extra)
            + ADDRESS.replace("\n", "\r\n"))


def export_manifest(extra="", key=OWNER, bucket="photos", file_system="EXT4"):
    return ("manifestVersion: 2.0\naccessKeyId: %s\ndeviceId: 532404500021\n"
            "fileSystem: %s\nlogBucket: logs\n%s"
            "operations:\n    - exportBucket: %s\n      prefix: dev1/\n      targetDirectory: /\n"
            % (key, file_system, extra, bucket) + ADDRESS)


def expected_signature(secret, job_id, manifest):
    mac = hmac.new(secret.encode(), (job_id + "\n" + manifest.replace("\r\n", "\n")).encode(),
                   hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def tree(root, skip=()):
    """Relative path -> bytes of every file below root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            if rel not in skip:
                with open(p, "rb") as fh:
                    out[rel] = fh.read()
    return out


class ImportExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(keys=KEYS)
        cls.ie = cls.server.client(service="importexport")
        cls.other = cls.server.client(service="importexport", key_id=OTHER,
                                      secret=KEYS[OTHER])
        cls.loose = cls.server.client(service="importexport",
                                      parameter_validation=False)
        cls.work = tempfile.mkdtemp(prefix="sluice-ie-")
        cls.sluice("bucket", "mb", "s3://photos")
        cls.sluice("bucket", "mb", "s3://logs")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def sluice(cls, *args, ok=True):
        out = subprocess.run([sluice_bin(), *args, *cls.server.store_args()],
                             capture_output=True, text=True)
        if ok:
            assert out.returncode == 0, out.stderr
        return out

    def code(self, call, **kw):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            call(**kw)
        err = cm.exception.response["Error"]
        return err["Code"], err["Message"]

    def expect(self, code, names, call, **kw):
        got, message = self.code(call, **kw)
        self.assertEqual(got, code, message)
        self.assertIn(names, message)
        return message

    def create(self, manifest, job_type="Import", client=None):
        r = (client or self.ie).create_job(JobType=job_type, Manifest=manifest,
                                           ValidateOnly=False)
        return r["JobId"], r

    def device(self, files):
        d = tempfile.mkdtemp(dir=self.work)
        for rel, data in files.items():
            p = os.path.join(d, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        return d

    def test_import_then_export_reproduces_the_device(self):
        files = {
            "a.txt": b"hello\n",
            "sub/b.csv": b"x,y\r\n1,2\r\n",
            "sub/deep/c.bin": os.urandom(70000),
            "caf\u00e9 menu.txt": "cr\u00e8me br\u00fbl\u00e9e\n".encode(),
            "tmp/skip.tmp": b"ignored",
        }
        manifest = import_manifest(extra=(
            "prefix: dev1\r\nlogBucket: logs\r\nlogPrefix: ie-logs/\r\n"
            "contentTypes:\r\n    csv: text/csv\r\nignore:\r\n    - ^tmp/\r\n"))

        # ValidateOnly creates nothing.
        before = self.ie.list_jobs()["Jobs"]
        r = self.ie.create_job(JobType="Import", Manifest=manifest, ValidateOnly=True)
        self.assertNotIn("JobId", r)
        self.assertIn("ValidateOnly", r["WarningMessage"])
        self.assertEqual(self.ie.list_jobs()["Jobs"], before)

        job, r = self.create(manifest)
        self.assertEqual(r["JobType"], "Import")
        self.assertEqual(r["Signature"], expected_signature(KEYS[OWNER], job, manifest))
        self.assertIn("jobId:%s" % job, r["SignatureFileContents"])
        self.assertIn("signature:%s" % r["Signature"], r["SignatureFileContents"])
        status = self.ie.get_status(JobId=job)
        self.assertEqual((status["ProgressCode"], status["LocationCode"]),
                         ("Pending", "NotReceived"))
        self.assertEqual(status["CurrentManifest"], manifest)

        # No SIGNATURE, then a wrong one: refused, nothing copied.
        dev = self.device(files)
        out = self.sluice("importexport", "run", job, "--device", dev, ok=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no SIGNATURE file", out.stderr)
        with open(os.path.join(dev, "SIGNATURE"), "w") as f:
            f.write(r["SignatureFileContents"].replace(job, "ZZZZZZ"))
        out = self.sluice("importexport", "run", job, "--device", dev, ok=False)
        self.assertIn("is for job ZZZZZZ", out.stderr)
        self.assertEqual(os.listdir(os.path.join(self.server.data, "buckets", "photos")), [])
        self.assertEqual(self.ie.get_status(JobId=job)["ProgressCode"], "Pending")

        with open(os.path.join(dev, "SIGNATURE"), "w") as f:
            f.write(r["SignatureFileContents"])
        out = self.sluice("importexport", "run", job, "--device", dev)
        self.assertIn("4 files copied", out.stdout)

        status = self.ie.get_status(JobId=job)
        self.assertEqual(status["ProgressCode"], "Complete", status["ProgressMessage"])
        self.assertEqual(status["LocationCode"], "AtAWS")
        self.assertEqual(status["ErrorCount"], 0)
        self.assertEqual((status["LogBucket"], status["LogKey"]),
                         ("logs", "ie-logs/import-log-" + job))
        log_path = os.path.join(self.server.data, "buckets", "logs", "ie-logs",
                                "import-log-" + job)
        with open(log_path) as f:
            log = f.read()
        self.assertIn("sub/b.csv,Success,dev1/sub/b.csv,%s,10,text/csv"
                      % hashlib.md5(files["sub/b.csv"]).hexdigest(), log)
        self.assertIn("tmp/skip.tmp,Ignored", log)
        self.assertIn("SIGNATURE,Skipped", log)
        bucket = tree(os.path.join(self.server.data, "buckets", "photos"))
        self.assertEqual(sorted(bucket),
                         sorted("dev1/" + k for k in files if not k.startswith("tmp/")))

        # Too late to cancel or update; and a device runs once.
        self.expect("UnableToCancelJobIdException", job, self.ie.cancel_job, JobId=job)
        self.expect("UnableToUpdateJobIdException", job, self.ie.update_job, JobId=job,
                    Manifest=manifest, JobType="Import", ValidateOnly=False)
        out = self.sluice("importexport", "run", job, "--device", dev, ok=False)
        self.assertIn("has run already", out.stderr)

        # Export the bucket onto a fresh folder: the same files, byte for byte.
        em = export_manifest(extra="logPrefix: out/\n")
        ejob, er = self.create(em, job_type="Export")
        fresh = tempfile.mkdtemp(dir=self.work)
        with open(os.path.join(fresh, "SIGNATURE"), "w") as f:
            f.write(er["SignatureFileContents"])
        self.sluice("importexport", "run", ejob, "--device", fresh)
        want = {k: v for k, v in files.items() if not k.startswith("tmp/")}
        self.assertEqual(tree(os.path.join(fresh, "dev1")), want)
        status = self.ie.get_status(JobId=ejob)
        self.assertEqual((status["ProgressCode"], status["ErrorCount"]), ("Complete", 0))
        self.assertEqual(status["LogKey"], "out/export-log-" + ejob)
        self.assertTrue(os.path.exists(os.path.join(
            self.server.data, "buckets", "logs", "out", "export-log-" + ejob)))

        # NTFS cannot name "a:b": that object goes to the recovery folder.
        self.sluice("bucket", "put", os.path.join(dev, "a.txt"), "s3://photos/dev1/a:b")
        njob, nr = self.create(export_manifest(file_system="NTFS"), job_type="Export")
        ntfs = tempfile.mkdtemp(dir=self.work)
        with open(os.path.join(ntfs, "SIGNATURE"), "w") as f:
            f.write(nr["SignatureFileContents"])
        out = self.sluice("importexport", "run", njob, "--device", ntfs, ok=False)
        self.assertIn("1 could not be", out.stderr)
        status = self.ie.get_status(JobId=njob)
        self.assertEqual((status["ProgressCode"], status["ErrorCount"]),
                         ("SuccessWithErrors", 1))
        with open(os.path.join(ntfs, "EXPORT-RECOVERY", "00000001"), "rb") as f:
            self.assertEqual(f.read(), files["a.txt"])

    def test_every_exception(self):
        ie, loose = self.ie, self.loose
        self.sluice("bucket", "mb", "s3://eu-logs", "--region", "eu-west-1")
        self.sluice("bucket", "mb", "s3://not-yours", "--owner", OTHER)
        good = import_manifest()
        cases = [
            ("MissingParameterException", "Manifest",
             loose.create_job, dict(JobType="Import", ValidateOnly=True)),
            ("MissingParameterException", "ValidateOnly",
             loose.create_job, dict(JobType="Import", Manifest=good)),
            ("InvalidParameterException", "JobType",
             ie.create_job, dict(JobType="Sideways", Manifest=good, ValidateOnly=True)),
            ("InvalidVersionException", "APIVersion",
             ie.create_job, dict(JobType="Import", Manifest=good, ValidateOnly=True,
                                 APIVersion="1.0")),
            ("MalformedManifestException", "line",
             ie.create_job, dict(JobType="Import", Manifest="bucket: [photos",
                                 ValidateOnly=True)),
            ("MissingManifestFieldException", "deviceId",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=good.replace("deviceId: 49382\r\n", ""))),
            ("InvalidManifestFieldException", "colour",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=import_manifest(extra="colour: red\n"))),
            ("InvalidManifestFieldException", "fileSystem",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=import_manifest(extra="fileSystem: NTFS\n"))),
            ("InvalidAccessKeyIdException", OTHER,
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=import_manifest(key=OTHER))),
            ("InvalidAddressException", "returnAddress.phoneNumber",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=good.replace("206-555-1111", "call me"))),
            ("MissingCustomsException", "customs",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=good.replace("country: USA", "country: FR")
                                 .replace("    stateOrProvince: WA\r\n", "")
                                 .replace("206-555-1111", "+33 1 23 45 67 89"))),
            ("InvalidCustomsException", "customs.deviceValue",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=import_manifest(extra=(
                                     "customs:\n    dataDescription: photos\n"
                                     "    encryptionClassification: 5D992\n"
                                     "    exportCertifierName: Jane Roe\n"
                                     "    requiresExportLicense: no\n"
                                     "    deviceValue: priceless\n"
                                     "    deviceCountryOfOrigin: China\n"
                                     "    deviceType: externalStorageDevice\n")))),
            ("InvalidFileSystemException", "FAT32",
             ie.create_job, dict(JobType="Export", ValidateOnly=True,
                                 Manifest=export_manifest(file_system="FAT32"))),
            ("NoSuchBucketException", "bucket: the bucket missing-bucket",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=import_manifest(bucket="missing-bucket"))),
            ("NoSuchBucketException", "operations[0].exportBucket",
             ie.create_job, dict(JobType="Export", ValidateOnly=True,
                                 Manifest=export_manifest(bucket="missing-bucket"))),
            ("MultipleRegionsException", "eu-logs in eu-west-1",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=import_manifest(extra="logBucket: eu-logs\n"))),
            ("BucketPermissionException", "not-yours",
             ie.create_job, dict(JobType="Import", ValidateOnly=True,
                                 Manifest=import_manifest(bucket="not-yours"))),
            ("InvalidJobIdException", "NOPE01", ie.get_status, dict(JobId="NOPE01")),
            ("InvalidJobIdException", "NOPE01", ie.cancel_job, dict(JobId="NOPE01")),
            ("InvalidParameterException", "MaxJobs", ie.list_jobs, dict(MaxJobs=0)),
            ("InvalidParameterException", "Marker", ie.list_jobs, dict(Marker="NOPE01")),
        ]
        for code, names, call, kw in cases:
            with self.subTest(code=code, names=names):
                self.expect(code, names, call, **kw)
        # The other key may use its own bucket.
        self.other.create_job(JobType="Import", ValidateOnly=True,
                              Manifest=import_manifest(bucket="not-yours", key=OTHER))

        # Jobs of another key; canceled jobs; expired jobs.
        job, _ = self.create(good)
        self.expect("InvalidAccessKeyIdException", OTHER, self.other.get_status, JobId=job)
        self.assertEqual(self.other.list_jobs()["Jobs"], [])
        self.assertTrue(self.ie.cancel_job(JobId=job)["Success"])
        for call in (ie.get_status, ie.cancel_job):
            self.expect("CanceledJobIdException", job, call, JobId=job)
        self.expect("CanceledJobIdException", job, ie.get_shipping_label, jobIds=[job])

        old, _ = self.create(good)
        age = "UPDATE jobs SET created_ms = created_ms - 2678400000 WHERE id = '%s'" % old  # 31 days
        if getattr(self.server, "store_url", None):
            subprocess.run(["psql", self.server.store_url, "-q", "-c", age], check=True)
        else:
            db = sqlite3.connect(os.path.join(self.server.data, "sluice.db"))
            with db:
                db.execute(age)
            db.close()
        for call in (ie.get_status, ie.cancel_job):
            self.expect("ExpiredJobIdException", old, call, JobId=old)
        self.expect("ExpiredJobIdException", old, ie.update_job, JobId=old, Manifest=good,
                    JobType="Import", ValidateOnly=True)
        dev = self.device({"f": b"x"})
        out = self.sluice("importexport", "run", old, "--device", dev, ok=False)
        self.assertIn("expired", out.stderr)

        # Query-protocol refusals: not signed.
        import urllib.request
        req = urllib.request.Request(self.server.url + "/", method="POST",
                                     data=b"Action=ListJobs&Version=2010-06-01",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req)
        self.assertEqual(cm.exception.code, 403)
        self.assertIn(b"<Code>MissingAuthenticationTokenException</Code>", cm.exception.read())

    def test_quota(self):
        server = Server("--max-importexport-jobs-per-day", "2", keys=KEYS)
        try:
            subprocess.run([sluice_bin(), "bucket", "mb", "s3://photos",
                            *server.store_args()], check=True, capture_output=True)
            ie = server.client(service="importexport")
            for _ in range(2):
                ie.create_job(JobType="Import", Manifest=import_manifest(), ValidateOnly=False)
            self.expect("CreateJobQuotaExceededException", "the quota is 2", ie.create_job,
                        JobType="Import", Manifest=import_manifest(), ValidateOnly=False)
            # Another key has its own quota.
            server.client(service="importexport", key_id=OTHER, secret=KEYS[OTHER]).create_job(
                JobType="Import", Manifest=import_manifest(key=OTHER), ValidateOnly=False)
        finally:
            server.stop()

    def test_list_update_cancel_and_label(self):
        other = self.other
        made = [self.create(import_manifest(key=OTHER), client=other)[0] for _ in range(5)]
        first = other.list_jobs(MaxJobs=2)
        self.assertTrue(first["IsTruncated"])
        seen = [j["JobId"] for j in first["Jobs"]]
        while True:
            page = other.list_jobs(MaxJobs=2, Marker=seen[-1])
            seen += [j["JobId"] for j in page["Jobs"]]
            if not page["IsTruncated"]:
                break
        self.assertEqual(seen, made[::-1])
        self.assertEqual(first["Jobs"][0]["JobType"], "Import")
        self.assertFalse(first["Jobs"][0]["IsCanceled"])

        # UpdateJob: a new manifest and signature; the old SIGNATURE is refused.
        job = made[0]
        before = other.get_status(JobId=job)
        new = import_manifest(key=OTHER, extra="prefix: moved\n")
        r = other.update_job(JobId=job, Manifest=new, JobType="Import", ValidateOnly=True)
        self.assertTrue(r["Success"])
        self.assertEqual(other.get_status(JobId=job)["CurrentManifest"], before["CurrentManifest"])
        self.expect("InvalidParameterException", "JobType", other.update_job, JobId=job,
                    Manifest=new, JobType="Export", ValidateOnly=False)
        r = other.update_job(JobId=job, Manifest=new, JobType="Import", ValidateOnly=False)
        self.assertIn("signature changed", r["WarningMessage"])
        after = other.get_status(JobId=job)
        self.assertEqual(after["CurrentManifest"], new)
        self.assertEqual(after["Signature"], expected_signature(KEYS[OTHER], job, new))
        dev = self.device({"x.txt": b"x"})
        with open(os.path.join(dev, "SIGNATURE"), "w") as f:
            f.write(before["SignatureFileContents"])
        out = self.sluice("importexport", "run", job, "--device", dev, ok=False)
        self.assertIn("does not match", out.stderr)

        # CancelJob, seen by ListJobs.
        self.assertTrue(other.cancel_job(JobId=made[1])["Success"])
        listed = {j["JobId"]: j["IsCanceled"] for j in other.list_jobs()["Jobs"]}
        self.assertTrue(listed[made[1]])
        self.assertFalse(listed[made[2]])
        self.expect("CanceledJobIdException", made[1], other.update_job, JobId=made[1],
                    Manifest=new, JobType="Import", ValidateOnly=False)

        # GetShippingLabel: one label for two devices; GetStatus lists it.
        label = other.get_shipping_label(jobIds=[made[2], made[3]], city="Seattle")
        url = label["ShippingLabelURL"]
        self.assertTrue(url.startswith("file://"), url)
        with open(url[len("file://"):]) as f:
            html = f.read()
        for needle in (made[2], made[3], "Seattle", "Jane Roe"):
            self.assertIn(needle, html)
        arts = other.get_status(JobId=made[2])["ArtifactList"]
        self.assertEqual(arts, [{"Description": "Shipping label", "URL": url}])
        self.expect("InvalidAddressException", "address.phoneNumber", other.get_shipping_label,
                    jobIds=[made[2]], phoneNumber="none")
        self.expect("InvalidJobIdException", "jobIds", self.loose.get_shipping_label, jobIds=[])


    def test_import_to_s3_keeps_the_attributes(self):
        moto = Moto()
        server = None
        try:
            env = moto.env()
            server = Server(keys=KEYS, env=env)
            run = lambda *a, ok=True: subprocess.run(  # noqa: E731
                [sluice_bin(), *a, *server.store_args()], capture_output=True,
                text=True, env=dict(os.environ, **env), check=ok)
            run("bucket", "mb", "s3://photos")
            ie = server.client(service="importexport")
            job, r = self.create(import_manifest(extra=(
                "contentTypes:\n    csv: text/csv\ncacheControl: max-age=60\n"
                "setContentEncodingForGzFiles: yes\n")), client=ie)
            dev = self.device({"a.csv": b"x,y\n", "b.csv.gz": b"\x1f\x8b fake"})
            with open(os.path.join(dev, "SIGNATURE"), "w") as f:
                f.write(r["SignatureFileContents"])
            run("importexport", "run", job, "--device", dev)
            s3 = moto.s3()
            head = s3.head_object(Bucket="photos", Key="a.csv")
            self.assertEqual((head["ContentType"], head["CacheControl"]),
                             ("text/csv", "max-age=60"))
            head = s3.head_object(Bucket="photos", Key="b.csv.gz")
            self.assertEqual((head["ContentType"], head["ContentEncoding"]),
                             ("text/csv", "gzip"))
            log = s3.get_object(Bucket="photos", Key="import-log-" + job)["Body"].read()
            self.assertIn(b"a.csv,Success,a.csv", log)
            self.assertEqual(ie.get_status(JobId=job)["ProgressCode"], "Complete")
        finally:
            if server:
                server.stop()
            moto.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
