#!/usr/bin/env python3
"""The canonical job in DuckDB, written into a .duckdb file: the peer that
benches/store.sh runs beside `sluice ingest --data-dir`.

Reads the CSV, normalizes what sluice normalizes (trimmed, NFC names and
cities, lower-case e-mails, phone digits with a country code, numbers as
numbers), keeps the last row of each e-mail, and stores the result as a
table. Prints the table's row count.

  python benches/peers/duckdb_job.py FILE OUT.duckdb
"""
import os
import sys

import duckdb

JOB = r"""
CREATE TABLE profiles AS
WITH src AS (
    SELECT *, row_number() OVER () AS rn
    FROM read_csv(?, header = true, all_varchar = true, ignore_errors = true,
                  parallel = true, quote = '"', escape = '"')
), norm AS (
    SELECT
        lower(trim(email)) AS email,
        trim(customer_id) AS account_number,
        nfc_normalize(trim(first_name)) AS first_name,
        nfc_normalize(trim(last_name)) AS last_name,
        CASE
            WHEN length(regexp_replace(phone, '[^0-9]', '', 'g')) = 10
                THEN '+1' || regexp_replace(phone, '[^0-9]', '', 'g')
            WHEN length(regexp_replace(phone, '[^0-9]', '', 'g')) BETWEEN 11 AND 15
                THEN '+' || regexp_replace(phone, '[^0-9]', '', 'g')
        END AS phone,
        nfc_normalize(trim(city)) AS city,
        trim(postal_code) AS postal_code,
        TRY_CAST(trim(lifetime_value) AS DOUBLE) AS lifetime_value,
        trim(signup_date) AS signup_date,
        notes,
        rn
    FROM src
    WHERE regexp_matches(trim(email), '^[^@\s]+@[^@\s]+\.[^@\s]+$')
)
SELECT * EXCLUDE (rn) FROM norm
QUALIFY row_number() OVER (PARTITION BY email ORDER BY rn DESC) = 1
"""


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    for path in (out, out + ".wal"):
        if os.path.exists(path):
            os.remove(path)
    con = duckdb.connect(out)
    con.execute(JOB, [src])
    (n,) = con.execute("SELECT count(*) FROM profiles").fetchone()
    con.close()
    print(n)


if __name__ == "__main__":
    main()
