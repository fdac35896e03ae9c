/*!
Deterministic, messy customer CSV for tests and benchmarks.

The same shape as the benchmark generator the project is measured with
(`gen_customers.py`): ten columns,

```text
customer_id,first_name,last_name,email,phone,city,postal_code,lifetime_value,signup_date,notes
```

with mixed-case and padded e-mails, phones in a dozen shapes (5 % of them
international), names with doubled spaces and decomposed accents, quoted
notes with commas, doubled quotes and embedded newlines, a share of rows
that repeat an earlier customer's e-mail (re-cased, with new values
elsewhere), and a share of bad rows of four kinds: 11 fields, 9 fields, an
invalid e-mail, an unparseable phone. `customer_id` is unique per row, so a
checker can tell which duplicate was kept.

The output is not byte-identical to the Python generator; its statistics
([`Stats`]) are exact for what it wrote.

# Example

```
use sluice::synth::{Spec, write_customers};

let mut csv = Vec::new();
let stats = write_customers(&Spec::new(1000, 7), &mut csv).unwrap();
assert_eq!(stats.rows, 1000);
assert_eq!(stats.bytes, csv.len() as u64);
```
*/

use std::io::{self, Write};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Data rows (the header is extra).
    pub rows: u64,
    /// Seed: the same spec writes the same bytes.
    pub seed: u64,
    /// Probability that a row reuses an earlier customer's e-mail.
    pub dup_rate: f64,
    /// Probability that a row is bad (one of four kinds).
    pub bad_rate: f64,
}

impl Spec {
    /// `rows` rows from `seed`, with the benchmark's rates: 20 % duplicates
    /// and 0.1 % bad rows.
    pub fn new(rows: u64, seed: u64) -> Spec {
        Spec {
            rows,
            seed,
            dup_rate: 0.2,
            bad_rate: 0.001,
        }
    }
}

/// What was written, exactly.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Stats {
    /// Data rows.
    pub rows: u64,
    /// Bytes, header included.
    pub bytes: u64,
    /// Rows that reuse an earlier customer's e-mail.
    pub dup_rows: u64,
    /// Rows with a newline inside a quoted note.
    pub multiline_rows: u64,
    /// Bad rows with 11 fields.
    pub bad_11_fields: u64,
    /// Bad rows with 9 fields.
    pub bad_9_fields: u64,
    /// Bad rows with an invalid e-mail.
    pub bad_email: u64,
    /// Bad rows with an unparseable phone.
    pub bad_phone: u64,
    /// Distinct normalized e-mails among rows with ten fields and a valid
    /// e-mail: the unique count of a dedup on e-mail.
    pub distinct_email_valid: u64,
}

/// The header row.
pub const HEADER: &str = "customer_id,first_name,last_name,email,phone,city,postal_code,lifetime_value,signup_date,notes\n";

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Wei",
    "Li",
    "Hiroshi",
    "Yuki",
    "Priya",
    "Rahul",
    "Olga",
    "Ivan",
    "Fatima",
    "Omar",
    "Mary Ann",
    "Jean Luc",
    "Anne Marie",
    "José",
    "Zoë",
    "Renée",
    "François",
    "Chloé",
    "Jürgen",
    "Sören",
    "Björn",
    "María",
    "Inés",
    "Noël",
    "Léa",
    "Hélène",
    "Jérôme",
    "Łukasz",
    "Małgorzata",
    "Øyvind",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Moore",
    "Jackson",
    "Lee",
    "Perez",
    "White",
    "Kim",
    "Chen",
    "Wang",
    "Tanaka",
    "Patel",
    "Singh",
    "Ivanov",
    "Kowalski",
    "Schmidt",
    "van der Berg",
    "de la Cruz",
    "O'Brien",
    "Mac Donald",
    "St. John",
    "Müller",
    "Groß",
    "Schäfer",
    "García",
    "Fernández",
    "Muñoz",
    "Núñez",
    "Lefèvre",
    "Côté",
    "Ørsted",
    "Dvořák",
    "Wójcik",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "proton.me",
    "example.org",
    "example.com",
    "acme-corp.com",
    "globex.io",
    "umbrella.co.uk",
    "web.de",
    "orange.fr",
    "company.example",
];
const CITIES: &[&str] = &[
    "New York",
    "Los Angeles",
    "Chicago",
    "Houston",
    "Phoenix",
    "San Diego",
    "Dallas",
    "San Francisco",
    "Seattle",
    "Denver",
    "Boston",
    "Miami",
    "\"Washington, D.C.\"",
    "\"Winston-Salem, NC\"",
    "London",
    "Manchester",
    "Berlin",
    "München",
    "Köln",
    "Zürich",
    "Montréal",
    "São Paulo",
    "  Springfield ",
    "springfield",
    "SPRINGFIELD",
];
const AREA: &[&str] = &[
    "212", "213", "312", "415", "503", "512", "617", "646", "702", "718", "786", "801", "206",
    "303", "404", "469", "510", "602", "619", "650", "713", "773", "818", "917",
];
const PLAIN_NOTES: &[&str] = &[
    "VIP customer",
    "prefers email",
    "called twice",
    "newsletter opt-in",
    "moved recently",
    "follow up Q3",
    "do not call",
    "referred by partner",
    "loyalty tier gold",
    "trial user",
];
const QUOTED_NOTES: &[&str] = &[
    "\"Called, no answer\"",
    "\"Prefers \"\"Mr.\"\" as title\"",
    "\"Owes $1,250.00, see ticket #4411\"",
    "\"Likes: shoes, bags, hats\"",
    "\"Said \"\"call back later\"\", then hung up\"",
    "\"He said \"\"no\"\", she said \"\"yes\"\"\"",
];
const MULTILINE_NOTES: &[&str] = &[
    "\"Line one\nLine two\"",
    "\"Called customer.\nFollow up next week, \"\"urgent\"\"\"",
    "\"Complaint:\n- late delivery\n- damaged box, refund issued\"",
    "\"Meeting notes\n\nBudget approved\"",
];
const BAD_EMAILS: &[&str] = &[
    "not-an-email",
    "",
    "john.smith(at)example.com",
    "jane.doe.example.com",
    "n/a",
    "  NONE  ",
    "mailto:",
    "user at domain dot com",
];
const BAD_PHONES: &[&str] = &[
    "N/A",
    "unknown",
    "-",
    "tbd",
    "call me",
    "n/a",
    "none",
    "ask office",
];

/// splitmix64: small, fast and good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn ascii_fold(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfkd()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn name_variant(rng: &mut Rng, name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    match rng.below(12) {
        0 => format!(" {name}"),
        1 => format!("{name}  "),
        2 => name.replace(' ', "  "),
        3..=5 if !name.is_ascii() => name.nfd().collect(),
        _ => name.to_owned(),
    }
}

fn entity_email(k: u64) -> String {
    let f = ascii_fold(FIRST[(k.wrapping_mul(2_654_435_761) % FIRST.len() as u64) as usize]);
    let l = ascii_fold(LAST[((k * 40_503 + 7) % LAST.len() as u64) as usize]);
    let d = DOMAINS[((k * 97 + k / 13) % DOMAINS.len() as u64) as usize];
    let local = match k % 4 {
        0 => format!("{f}.{l}{k}"),
        1 => format!("{}{l}{k}", &f[..1]),
        2 => format!("{l}_{f}{k}"),
        _ => format!("{f}{k}"),
    };
    format!("{local}@{d}")
}

fn render_email(rng: &mut Rng, e: &str) -> String {
    let cased = match rng.below(20) {
        0..=10 => e.to_owned(),
        11..=14 => {
            let (local, domain) = e.split_at(e.find('@').expect("an @"));
            format!("{}{}", capitalize(local), capitalize(domain))
        }
        15..=16 => e.to_uppercase(),
        _ => capitalize(e),
    };
    match rng.below(100) {
        0..=69 => cased,
        70..=79 => format!(" {cased}"),
        80..=89 => format!("{cased}  "),
        90..=98 => format!("  {cased} "),
        _ => format!("\" {cased} \""),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn render_phone(rng: &mut Rng) -> String {
    let r = rng.below(1000);
    if r < 50 {
        return match r {
            0..=24 => format!(
                "+44 20 {} {}",
                7000 + rng.below(1000),
                1000 + rng.below(9000)
            ),
            25..=34 => format!("+44 7700 {}", 100_000 + rng.below(900_000)),
            _ => format!("+49 30 {}", 1_000_000 + rng.below(99_000_000)),
        };
    }
    let a = rng.pick(AREA);
    let line = format!("{:04}", rng.below(10_000));
    match rng.below(100) {
        0..=24 => format!("({a}) 555-{line}"),
        25..=39 => format!("{a}.555.{line}"),
        40..=54 => format!("+1 {a} 555 {line}"),
        55..=69 => format!("{a}555{line}"),
        70..=84 => format!("{a}-555-{line}"),
        85..=92 => format!("1-{a}-555-{line}"),
        _ => format!("+1 ({a}) 555-{line}"),
    }
}

fn render_ltv(rng: &mut Rng) -> String {
    let v = rng.below(5_000_000);
    match rng.below(100) {
        0..=6 => String::new(),
        7..=11 => format!(
            "\"${},{:03}.{:02}\"",
            v / 100_000,
            (v / 100) % 1000,
            v % 100
        ),
        12..=14 => format!("{}", v / 100),
        _ => format!("{}.{:02}", v / 100, v % 100),
    }
}

fn render_notes(rng: &mut Rng) -> &'static str {
    match rng.below(100) {
        0..=59 => "",
        60..=84 => rng.pick(PLAIN_NOTES),
        85..=97 => rng.pick(QUOTED_NOTES),
        _ => rng.pick(MULTILINE_NOTES),
    }
}

/// Writes `spec.rows` rows (and the header) to `out`.
///
/// # Errors
///
/// When writing fails.
pub fn write_customers<W: Write>(spec: &Spec, out: W) -> io::Result<Stats> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut rng = Rng(spec.seed ^ 0x5EED_5EED_5EED_5EED);
    let mut stats = Stats {
        rows: spec.rows,
        ..Stats::default()
    };
    out.write_all(HEADER.as_bytes())?;
    stats.bytes = HEADER.len() as u64;
    // 1 = seen with ten fields and a valid e-mail.
    let mut valid = Vec::<bool>::new();
    let mut next_k = 0u64;
    let mut cid = 10_000_000u64;
    let mut line = String::with_capacity(256);
    for _ in 0..spec.rows {
        let k = if next_k > 0 && rng.unit() < spec.dup_rate {
            stats.dup_rows += 1;
            rng.below(next_k)
        } else {
            next_k += 1;
            valid.push(false);
            next_k - 1
        };
        cid += 1 + rng.below(3);
        let first = name_variant(
            &mut rng,
            FIRST[(k.wrapping_mul(2_654_435_761) % FIRST.len() as u64) as usize],
        );
        let last = name_variant(
            &mut rng,
            LAST[((k * 40_503 + 7) % LAST.len() as u64) as usize],
        );
        let email = render_email(&mut rng, &entity_email(k));
        let phone = render_phone(&mut rng);
        let city = rng.pick(CITIES);
        let postal = if rng.below(10) == 0 {
            format!("0{}", 1000 + rng.below(9000))
        } else {
            format!("{}", 10_000 + rng.below(89_999))
        };
        let ltv = render_ltv(&mut rng);
        let date = format!(
            "{}-{:02}-{:02}",
            2010 + rng.below(16),
            1 + rng.below(12),
            1 + rng.below(28)
        );
        let notes = render_notes(&mut rng);
        if notes.contains('\n') {
            stats.multiline_rows += 1;
        }
        line.clear();
        use std::fmt::Write as _;
        let mut email_field = email;
        let mut phone_field = phone;
        let mut counts = true;
        if rng.unit() < spec.bad_rate {
            match rng.below(4) {
                0 => {
                    stats.bad_11_fields += 1;
                    counts = false;
                    let _ = writeln!(
                        line,
                        "C{cid},{first},{}, Jr,{email_field},{phone_field},{city},{postal},{ltv},{date},{notes}",
                        last.trim()
                    );
                }
                1 => {
                    stats.bad_9_fields += 1;
                    counts = false;
                    let _ = writeln!(
                        line,
                        "C{cid},{first},{last},{phone_field},{city},{postal},{ltv},{date},{notes}"
                    );
                }
                2 => {
                    stats.bad_email += 1;
                    counts = false;
                    email_field = rng.pick(BAD_EMAILS).to_owned();
                }
                _ => {
                    stats.bad_phone += 1;
                    phone_field = rng.pick(BAD_PHONES).to_owned();
                }
            }
        }
        if line.is_empty() {
            let _ = writeln!(
                line,
                "C{cid},{first},{last},{email_field},{phone_field},{city},{postal},{ltv},{date},{notes}"
            );
        }
        if counts {
            valid[k as usize] = true;
        }
        out.write_all(line.as_bytes())?;
        stats.bytes += line.len() as u64;
    }
    stats.distinct_email_valid = valid.iter().filter(|&&v| v).count() as u64;
    out.flush()?;
    Ok(stats)
}

/// The mapping of every column of the generated file, as a mapping file
/// (`testdata/customers.mapping.json` holds the same).
pub const MAPPING_JSON: &str = r#"{
  "DomainName": "customers",
  "DisplayName": "customers.csv",
  "DataExpiry": 14,
  "Fields": {
    "CustomerId": {"Source": "_source.customer_id", "Target": "_profile.AccountNumber", "ContentType": "STRING"},
    "FirstName": {"Source": "_source.first_name", "Target": "_profile.FirstName", "ContentType": "NAME"},
    "LastName": {"Source": "_source.last_name", "Target": "_profile.LastName", "ContentType": "NAME"},
    "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress", "ContentType": "EMAIL_ADDRESS"},
    "Phone": {"Source": "_source.phone", "Target": "_profile.PhoneNumber", "ContentType": "PHONE_NUMBER"},
    "City": {"Source": "_source.city", "Target": "_profile.Address.City", "ContentType": "NAME"},
    "PostalCode": {"Source": "_source.postal_code", "Target": "_profile.Address.PostalCode", "ContentType": "STRING"},
    "LifetimeValue": {"Source": "_source.lifetime_value", "Target": "_profile.Attributes.LifetimeValue", "ContentType": "NUMBER"},
    "SignupDate": {"Source": "_source.signup_date", "Target": "_profile.Attributes.SignupDate", "ContentType": "STRING"},
    "Notes": {"Source": "_source.notes", "Target": "_profile.Attributes.Notes", "ContentType": "STRING"}
  },
  "UniqueKey": "Email"
}
"#;

/// What [`write_endpoints`] generates: a Pinpoint endpoint CSV.
#[derive(Clone, Copy, Debug)]
pub struct EndpointSpec {
    /// Data rows (the header is extra).
    pub rows: u64,
    /// Distinct endpoints the rows are drawn from (the rest of the rows
    /// update one of them).
    pub endpoints: u64,
    /// Extra `Attributes.*` columns, each with a value in every row.
    pub attributes: usize,
    /// Seed: the same spec writes the same bytes.
    pub seed: u64,
}

/// Writes `spec.rows` endpoint rows (and the header) to `out`: `EMAIL`
/// endpoints with mixed-case addresses, a user id, first and last names as
/// user attributes, a city and postal code, a `Metrics.lifetime_value`, and
/// `spec.attributes` attribute columns. About 1 row in 200 has a bad
/// address. Returns the bytes written.
///
/// # Errors
///
/// When writing fails.
pub fn write_endpoints<W: Write>(spec: &EndpointSpec, out: W) -> io::Result<u64> {
    use std::fmt::Write as _;
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut rng = Rng(spec.seed ^ 0xE9D0_1A75_E9D0_1A75);
    let mut header = String::from(
        "ChannelType,Address,User.UserId,User.UserAttributes.FirstName,\
         User.UserAttributes.LastName,Location.City,Location.PostalCode,Metrics.lifetime_value",
    );
    for a in 0..spec.attributes {
        let _ = write!(header, ",Attributes.attr{a:02}");
    }
    header.push('\n');
    out.write_all(header.as_bytes())?;
    let mut bytes = header.len() as u64;
    let mut line = String::with_capacity(256 + 16 * spec.attributes);
    let endpoints = spec.endpoints.max(1);
    for _ in 0..spec.rows {
        let k = rng.below(endpoints);
        let first = FIRST[(k.wrapping_mul(2_654_435_761) % FIRST.len() as u64) as usize];
        let last = LAST[((k * 40_503 + 7) % LAST.len() as u64) as usize];
        let address = if rng.below(200) == 0 {
            rng.pick(BAD_EMAILS).to_owned()
        } else {
            render_email(&mut rng, &entity_email(k)).replace('"', "")
        };
        line.clear();
        let _ = write!(
            line,
            "EMAIL,{},u{k},{first},{last},{},{},{}.{:02}",
            address.trim(),
            rng.pick(CITIES),
            10_000 + rng.below(89_999),
            rng.below(50_000),
            rng.below(100)
        );
        for _ in 0..spec.attributes {
            let _ = write!(line, ",{}", rng.pick(FIRST));
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    out.flush()?;
    Ok(bytes)
}
