"""SearchProfiles and DeleteProfile against `sluice serve`, driven by boto3.

Uploads a generated CSV through an upload job, then reads the profiles back
the way a Customer Profiles user checks an upload: by every search key the
job's mapping fills, by its UniqueKey's name and by ProfileId, with AND and
OR, a page at a time; then changes a profile by a second upload, deletes
one, and asks for what must be refused.

    SLUICE_BIN=target/debug/sluice python tests/boto3/test_search_profiles.py
"""

import time
import unittest

from harness import Server
from test_upload_jobs import put, sse_headers, wait

FIELDS = {
    "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress",
              "ContentType": "EMAIL_ADDRESS"},
    "First": {"Source": "_source.first", "Target": "_profile.FirstName",
              "ContentType": "NAME"},
    "Last": {"Source": "_source.last", "Target": "_profile.LastName",
             "ContentType": "NAME"},
    "Phone": {"Source": "_source.phone", "Target": "_profile.PhoneNumber",
              "ContentType": "PHONE_NUMBER"},
    "Account": {"Source": "_source.account", "Target": "_profile.AccountNumber",
                "ContentType": "STRING"},
    "City": {"Source": "_source.city", "Target": "_profile.Address.City",
             "ContentType": "NAME"},
    "Gender": {"Source": "_source.gender", "Target": "_profile.Gender",
               "ContentType": "STRING"},
    "Tier": {"Source": "_source.tier", "Target": "_profile.Attributes.Tier",
             "ContentType": "STRING"},
}

N = 60  # people; every 5th is an "Ann Lee", 12 of them


def person(i, phone_offset=0):
    first, last = ("Ann", "Lee") if i % 5 == 0 else ("Bo%d" % i, "Kim")
    gender = "FEMALE" if i % 2 else "nonbinary"
    return "p%d@example.com,%s,%s,+1 206 555 %04d,ACC-%d,seattle,%s,gold" % (
        i, first, last, i + phone_offset, i, gender)


class SearchProfiles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.cp = cls.server.client()
        cls.cp.create_domain(DomainName="crm", DefaultExpirationDays=30)
        rows = [person(i) for i in range(N)]
        # The same person twice: the later row wins.
        rows.append(person(7, phone_offset=1000))
        cls.upload(rows)

    @classmethod
    def upload(cls, rows):
        job = cls.cp.create_upload_job(
            DomainName="crm", DisplayName="people", Fields=FIELDS,
            UniqueKey="Email")["JobId"]
        path = cls.cp.get_upload_job_path(DomainName="crm", JobId=job)
        body = ("email,first,last,phone,account,city,gender,tier\n"
                + "\n".join(rows) + "\n").encode()
        status, text = put(path["Url"], body, sse_headers(path["ClientToken"]))
        assert status == 200, text
        cls.cp.start_upload_job(DomainName="crm", JobId=job)
        done = wait(cls.cp, "crm", job)
        assert done["Status"] == "SUCCEEDED", done
        return done

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def search(self, key, values, **kw):
        return self.cp.search_profiles(DomainName="crm", KeyName=key, Values=values, **kw)

    def test_1_by_email_in_the_service_shape(self):
        got = self.search("_email", ["P3@Example.COM"])
        self.assertNotIn("NextToken", got)
        self.assertEqual(len(got["Items"]), 1)
        p = got["Items"][0]
        self.assertRegex(p["ProfileId"], "^[a-f0-9]{32}$")
        self.assertEqual(p["EmailAddress"], "p3@example.com")
        self.assertEqual(p["FirstName"], "Bo3")
        self.assertEqual(p["LastName"], "Kim")
        self.assertEqual(p["PhoneNumber"], "+12065550003")
        self.assertEqual(p["AccountNumber"], "ACC-3")
        self.assertEqual(p["Address"], {"City": "seattle"})
        self.assertEqual(p["Gender"], "FEMALE")
        self.assertEqual(p["Attributes"], {"Tier": "gold"})
        self.assertEqual(p["FoundByItems"], [
            {"KeyName": "_email", "Values": ["p3@example.com"]}])
        # A value outside Gender's enum is kept as GenderString.
        p4 = self.search("_email", ["p4@example.com"])["Items"][0]
        self.assertNotIn("Gender", p4)
        self.assertEqual(p4["GenderString"], "nonbinary")

    def test_2_every_key_the_mapping_fills(self):
        one = self.search("_email", ["p8@example.com"])["Items"][0]
        pid = one["ProfileId"]
        for key, value in [("_phone", "(206) 555-0008"), ("_phone", "+12065550008"),
                           ("_account", "acc-8"), ("Email", " P8@example.com"),
                           ("_profileId", pid)]:
            items = self.search(key, [value])["Items"]
            self.assertEqual([i["ProfileId"] for i in items], [pid], (key, value))
        # The later row of p7 won: its phone, not the first row's.
        self.assertEqual(self.search("_phone", ["+12065550007"])["Items"], [])
        self.assertEqual(len(self.search("_phone", ["+12065551007"])["Items"]), 1)
        # A predefined key no upload fills finds nothing.
        self.assertEqual(self.search("_orderId", ["1"])["Items"], [])

    def test_3_full_names_page_by_page(self):
        seen, token = [], None
        while True:
            kw = {"MaxResults": 5}
            if token:
                kw["NextToken"] = token
            page = self.search("_fullName", ["ann LEE"], **kw)
            seen += [p["EmailAddress"] for p in page["Items"]]
            self.assertLessEqual(len(page["Items"]), 5)
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual(sorted(seen), sorted("p%d@example.com" % i for i in range(0, N, 5)))
        self.assertEqual(len(seen), len(set(seen)))
        # The default page is 20.
        self.assertEqual(len(self.search("_fullName", ["Ann Lee"])["Items"]), 12)

    def test_4_and_or(self):
        both = self.search("_fullName", ["Ann Lee"], LogicalOperator="AND",
                           AdditionalSearchKeys=[{"KeyName": "_account",
                                                  "Values": ["ACC-10", "ACC-11"]}])
        self.assertEqual([p["AccountNumber"] for p in both["Items"]], ["ACC-10"])
        self.assertEqual(
            sorted(f["KeyName"] for f in both["Items"][0]["FoundByItems"]),
            ["_account", "_fullName"])
        either = self.search("_email", ["p1@example.com"], LogicalOperator="OR",
                             AdditionalSearchKeys=[{"KeyName": "_account",
                                                    "Values": ["ACC-2"]},
                                                   {"KeyName": "_phone",
                                                    "Values": ["+12065550003"]}])
        self.assertEqual(sorted(p["AccountNumber"] for p in either["Items"]),
                         ["ACC-1", "ACC-2", "ACC-3"])
        # AND with a key that finds nothing finds nothing.
        for key, value in [("Email", "nobody@example.com"), ("_profileId", "0" * 32)]:
            none = self.search(key, [value], LogicalOperator="AND",
                               AdditionalSearchKeys=[{"KeyName": "_fullName",
                                                      "Values": ["Ann Lee"]}])
            self.assertEqual(none["Items"], [], key)
        by_key = self.search("Email", ["p10@example.com"], LogicalOperator="AND",
                             AdditionalSearchKeys=[{"KeyName": "_fullName",
                                                    "Values": ["Ann Lee"]}])
        self.assertEqual([p["AccountNumber"] for p in by_key["Items"]], ["ACC-10"])
        # OR is the default.
        default = self.search("_account", ["ACC-1"], AdditionalSearchKeys=[
            {"KeyName": "_account", "Values": ["ACC-2"]}])
        self.assertEqual(len(default["Items"]), 2)

    def test_5_a_second_upload_changes_what_is_found(self):
        before = self.search("_email", ["p9@example.com"])["Items"][0]
        self.upload(["p9@example.com,Ann,Lee,+1 206 555 9999,ACC-9,seattle,MALE,silver"])
        after = self.search("_email", ["p9@example.com"])["Items"][0]
        self.assertEqual(after["ProfileId"], before["ProfileId"])
        self.assertEqual(after["PhoneNumber"], "+12065559999")
        self.assertEqual(self.search("_phone", ["+12065550009"])["Items"], [])
        self.assertIn("p9@example.com", [
            p["EmailAddress"] for p in self.search("_fullName", ["Ann Lee"],
                                                   MaxResults=100)["Items"]])

    def test_6_delete_profile(self):
        pid = self.search("_email", ["p11@example.com"])["Items"][0]["ProfileId"]
        got = self.cp.delete_profile(DomainName="crm", ProfileId=pid)
        self.assertIn(pid, got["Message"])
        self.assertEqual(self.search("_email", ["p11@example.com"])["Items"], [])
        self.assertEqual(self.search("_profileId", [pid])["Items"], [])
        with self.assertRaises(self.cp.exceptions.ResourceNotFoundException):
            self.cp.delete_profile(DomainName="crm", ProfileId=pid)
        with self.assertRaises(self.cp.exceptions.ResourceNotFoundException):
            self.cp.delete_profile(DomainName="crm", ProfileId="0" * 32)
        with self.assertRaises(self.cp.exceptions.BadRequestException) as e:
            self.cp.delete_profile(DomainName="crm", ProfileId="not-an-id")
        self.assertIn("ProfileId", str(e.exception))
        with self.assertRaises(self.cp.exceptions.ResourceNotFoundException):
            self.cp.delete_profile(DomainName="nope", ProfileId=pid)
        count = self.cp.get_domain(DomainName="crm")["Stats"]["ProfileCount"]
        self.assertEqual(count, N - 1)

    def test_7_refusals(self):
        cases = [
            (dict(KeyName="_shoeSize", Values=["9"]), "_shoeSize"),
            (dict(KeyName="Phone", Values=["1"]), "Phone"),  # a field, not the UniqueKey
            (dict(KeyName="_email", Values=["a"], LogicalOperator="XOR"), "LogicalOperator"),
            (dict(KeyName="_email", Values=["a"], MaxResults=101), "MaxResults"),
            (dict(KeyName="_email", Values=["a"], NextToken="zz"), "NextToken"),
            (dict(KeyName="_email", Values=["x" * 256]), "Values"),
            (dict(KeyName="bad key!", Values=["a"]), "KeyName"),
            (dict(KeyName="_email", Values=["a"], AdditionalSearchKeys=[
                {"KeyName": "_phone", "Values": ["1"]}] * 5), "AdditionalSearchKeys"),
        ]
        for kw, named in cases:
            with self.assertRaises(self.cp.exceptions.BadRequestException, msg=kw) as e:
                self.cp.search_profiles(DomainName="crm", **kw)
            self.assertIn(named, str(e.exception), kw)
        with self.assertRaises(self.cp.exceptions.ResourceNotFoundException):
            self.cp.search_profiles(DomainName="nope", KeyName="_email", Values=["a"])


if __name__ == "__main__":
    t0 = time.time()
    unittest.main(verbosity=2)
