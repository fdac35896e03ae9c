"""Accounts: keys of different accounts (`sluice_account_id` in the
credentials file) see only their own domains, upload jobs, apps and
Import/Export jobs, get what the service answers for another's, and their
ARNs carry their account id. Upload URLs are bound to the account and host
they were issued for.

    SLUICE_BIN=target/debug/sluice python tests/boto3/test_accounts.py
"""

import base64
import hashlib
import unittest
import urllib.error
import urllib.request

from harness import Server

ANN = ("AKIAANNANNANNANN0001", "ann-secret-ann-secret-ann-secret-00001", "111122223333")
BOB = ("AKIABOBBOBBOBBOB0002", "bob-secret-bob-secret-bob-secret-00002", "444455556666")
# No sluice_account_id: the server's default account.
CY = ("AKIACYCYCYCYCYCY0003", "cy-secret-cy-secret-cy-secret-cy-00003", None)

MANIFEST = """manifestVersion: 2.0
accessKeyId: {key}
deviceId: disk-1
eraseDevice: no
bucket: inbox
returnAddress:
    name: Jane Roe
    street1: 123 Any Street
    city: Anytown
    stateOrProvince: WA
    postalCode: 91011
    phoneNumber: +1 206 555 1111
    country: US
"""


class Accounts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(keys={k: (s, a) for k, s, a in (ANN, BOB, CY)})

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def client(self, who, service):
        return self.server.client(service=service, key_id=who[0], secret=who[1])

    def test_profiles_domains_and_upload_jobs(self):
        ann, bob = self.client(ANN, "customer-profiles"), self.client(BOB, "customer-profiles")
        ann.create_domain(DomainName="shop", DefaultExpirationDays=30)
        self.assertNotIn("shop", [d["DomainName"] for d in bob.list_domains()["Items"]])
        with self.assertRaises(bob.exceptions.ResourceNotFoundException):
            bob.get_domain(DomainName="shop")
        # Bob's own "shop" is another domain.
        bob.create_domain(DomainName="shop", DefaultExpirationDays=7)
        self.assertEqual(ann.get_domain(DomainName="shop")["DefaultExpirationDays"], 30)
        self.assertEqual(bob.get_domain(DomainName="shop")["DefaultExpirationDays"], 7)
        fields = {"Email": {"Source": "_source.email", "Target": "_profile.EmailAddress",
                            "ContentType": "EMAIL_ADDRESS"}}
        job = ann.create_upload_job(DomainName="shop", DisplayName="x", Fields=fields,
                                    UniqueKey="Email")["JobId"]
        # Bob cannot see Ann's job, nor take over its upload.
        with self.assertRaises(bob.exceptions.ResourceNotFoundException):
            bob.get_upload_job(DomainName="shop", JobId=job)
        with self.assertRaises(bob.exceptions.ResourceNotFoundException):
            bob.get_upload_job_path(DomainName="shop", JobId=job)
        path = ann.get_upload_job_path(DomainName="shop", JobId=job)
        self.assertIn("/uploads/111122223333/shop/", path["Url"])
        key = base64.b64decode(path["ClientToken"])
        headers = {
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": path["ClientToken"],
            "x-amz-server-side-encryption-customer-key-MD5":
                base64.b64encode(hashlib.md5(key).digest()).decode(),
            "Content-Type": "application/octet-stream",
        }

        def put(url):
            req = urllib.request.Request(url, data=b"email\na@b.co\n", method="PUT",
                                         headers=headers)
            try:
                with urllib.request.urlopen(req) as r:
                    return r.status, ""
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()
        # The URL moved to Bob's account, or to another name of the host:
        # not good there.
        status, text = put(path["Url"].replace("/111122223333/", "/444455556666/"))
        self.assertEqual(status, 403, text)
        self.assertIn("SignatureDoesNotMatch", text)
        status, text = put(path["Url"].replace("127.0.0.1", "localhost"))
        self.assertEqual(status, 403, text)
        self.assertIn("SignatureDoesNotMatch", text)
        self.assertEqual(put(path["Url"])[0], 200)

    def test_pinpoint_apps_and_their_arns(self):
        ann, bob = self.client(ANN, "pinpoint"), self.client(BOB, "pinpoint")
        app = ann.create_app(CreateApplicationRequest={"Name": "a"})["ApplicationResponse"]
        self.assertIn(":111122223333:", app["Arn"])
        with self.assertRaises(bob.exceptions.NotFoundException):
            bob.get_app(ApplicationId=app["Id"])
        with self.assertRaises(bob.exceptions.NotFoundException):
            bob.delete_app(ApplicationId=app["Id"])
        self.assertNotIn(app["Id"], [a["Id"] for a in bob.get_apps()["ApplicationsResponse"]
                                     .get("Item", [])])
        cy = self.client(CY, "pinpoint")
        mine = cy.create_app(CreateApplicationRequest={"Name": "c"})["ApplicationResponse"]
        self.assertIn(":000000000000:", mine["Arn"])
        self.assertEqual(ann.get_app(ApplicationId=app["Id"])["ApplicationResponse"]["Name"], "a")

    def test_importexport_jobs(self):
        ann, bob = self.client(ANN, "importexport"), self.client(BOB, "importexport")
        self.client(ANN, "s3").create_bucket(Bucket="inbox")
        job = ann.create_job(JobType="Import", Manifest=MANIFEST.format(key=ANN[0]),
                             ValidateOnly=False)["JobId"]
        with self.assertRaises(bob.exceptions.InvalidJobIdException):
            bob.get_status(JobId=job)
        with self.assertRaises(bob.exceptions.InvalidJobIdException):
            bob.cancel_job(JobId=job)
        self.assertNotIn(job, [j["JobId"] for j in bob.list_jobs()["Jobs"]])
        self.assertEqual(ann.get_status(JobId=job)["JobId"], job)

    def test_buckets(self):
        ann, bob = self.client(ANN, "s3"), self.client(BOB, "s3")
        ann.create_bucket(Bucket="ann-bucket")
        ann.put_object(Bucket="ann-bucket", Key="in/e.csv",
                       Body=b"ChannelType,Address\nEMAIL,a@b.co\n")
        self.assertNotIn("ann-bucket", [b["Name"] for b in bob.list_buckets()["Buckets"]])
        self.assertIn("ann-bucket", [b["Name"] for b in ann.list_buckets()["Buckets"]])

        def denied(call, **kw):
            with self.assertRaises(bob.exceptions.ClientError) as e:
                call(**kw)
            err = e.exception.response["Error"]
            self.assertIn(err["Code"], ("AccessDenied", "403"), (call, err))
        denied(bob.head_bucket, Bucket="ann-bucket")
        denied(bob.get_object, Bucket="ann-bucket", Key="in/e.csv")
        denied(bob.put_object, Bucket="ann-bucket", Key="x", Body=b"x")
        denied(bob.list_objects_v2, Bucket="ann-bucket")
        denied(bob.delete_object, Bucket="ann-bucket", Key="in/e.csv")
        denied(bob.delete_bucket, Bucket="ann-bucket")
        bob.create_bucket(Bucket="bob-bucket")
        denied(bob.copy_object, Bucket="bob-bucket", Key="stolen",
               CopySource={"Bucket": "ann-bucket", "Key": "in/e.csv"})
        with self.assertRaises(bob.exceptions.BucketAlreadyExists):
            bob.create_bucket(Bucket="ann-bucket")
        with self.assertRaises(bob.exceptions.NoSuchBucket):
            bob.get_object(Bucket="no-such-bucket-here", Key="x")
        # Ann's object is untouched; her jobs may read it, Bob's may not.
        self.assertEqual(ann.get_object(Bucket="ann-bucket", Key="in/e.csv")["Body"].read(),
                         b"ChannelType,Address\nEMAIL,a@b.co\n")
        pp = self.client(BOB, "pinpoint")
        app = pp.create_app(CreateApplicationRequest={"Name": "b"})["ApplicationResponse"]["Id"]
        with self.assertRaises(pp.exceptions.NotFoundException):
            pp.create_import_job(ApplicationId=app, ImportJobRequest={
                "Format": "CSV", "S3Url": "s3://ann-bucket/in/",
                "RoleArn": "arn:aws:iam::444455556666:role/Import"})
        ie = self.client(BOB, "importexport")
        with self.assertRaises(ie.exceptions.BucketPermissionException):
            ie.create_job(JobType="Import", ValidateOnly=False,
                          Manifest=MANIFEST.format(key=BOB[0]).replace("inbox", "ann-bucket"))
        # Once Ann deletes it, the name is free for Bob.
        ann.delete_object(Bucket="ann-bucket", Key="in/e.csv")
        ann.delete_bucket(Bucket="ann-bucket")
        bob.create_bucket(Bucket="ann-bucket")
        self.assertIn("ann-bucket", [b["Name"] for b in bob.list_buckets()["Buckets"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
