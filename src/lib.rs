/*!
sluice ingests large CSV files fast and exactly, and speaks the import-job
APIs people know from AWS.

The heart is [`ingest`], an engine that knows nothing of AWS: it splits
inputs into pieces on record boundaries, parses them in parallel, maps and
normalizes fields by content type, and keeps the last row of every unique
key, with the same answer whatever the number of threads or the piece size.
[`mapping`] reads mappings in the shape of a Customer Profiles
`CreateUploadJob` request.

# Example

```
use sluice::ingest::{IngestBuilder, Input};
use sluice::mapping::MappingFile;

let mapping = MappingFile::from_json(br#"{
    "Fields": {
        "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress",
                  "ContentType": "EMAIL_ADDRESS"},
        "Phone": {"Source": "_source.phone", "Target": "_profile.PhoneNumber",
                  "ContentType": "PHONE_NUMBER"}
    },
    "UniqueKey": "Email"
}"#)?;
let csv = "email,phone\n Ann@Example.com ,(415) 555-0132\nnot-an-email,555\n";
let outcome = IngestBuilder::new(mapping.mapping)
    .threads(2)
    .build()?
    .run(vec![Input::bytes("people.csv", csv.as_bytes())])?;
let s = &outcome.summary;
assert_eq!((s.processed, s.unique, s.failed), (2, 1, 1));
assert_eq!(
    s.failures[0].to_string(),
    "people.csv:3: record 2: unique key field \"Email\" (column \"email\") \
     is not a valid EMAIL_ADDRESS: not an e-mail address: no '@'"
);
let first = outcome.records.in_input_order().next().unwrap();
assert_eq!(first.values().collect::<Vec<_>>(), ["ann@example.com", "+14155550132"]);
# Ok::<(), Box<dyn std::error::Error>>(())
```
*/
#![deny(missing_docs)]

#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "jobs")]
pub mod crypto;
pub mod endpoints;
pub mod ingest;
#[cfg(feature = "jobs")]
pub mod job;
pub mod mapping;
#[cfg(feature = "jobs")]
pub mod objects;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "jobs")]
pub mod store;
pub mod synth;
pub mod time;

pub use ingest::{
    Failure, Field, FieldMapper, IngestBuilder, Input, Mapping, Outcome, Progress, RowMapper,
    Summary,
};
pub use mapping::MappingFile;

#[cfg(feature = "jobs")]
pub use job::{ImportJob, JobSpec, ProfileJob, Runner, RunnerConfig, Source};
#[cfg(feature = "jobs")]
pub use objects::{LocalObjects, MemoryObjects, Objects};
#[cfg(feature = "jobs")]
pub use store::{AccountId, JobRef, JobStatus, MemoryStore, Store};

/// The README's examples, run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
