//! Endpoint files through the engine: [`EndpointMapper`], the row mapper of
//! Pinpoint's import format, and the way back from a kept row to an
//! [`Endpoint`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::csv::{Columns, Layout, Scratch};
use super::{Endpoint, Identity, Refusal};
use crate::ingest::map::{HeaderError, InputFormat, Record, RowMapper, RowOut};
use crate::ingest::normalize::{PhoneNormalizer, UnknownRegion};
use crate::ingest::{FailureReason, UniqueRecord};

/// The two file formats.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum Format {
    /// A header of dotted attribute names, one endpoint per row.
    #[serde(rename = "CSV")]
    Csv,
    /// One endpoint object per line.
    #[serde(rename = "JSON")]
    Json,
}

impl Format {
    /// `CSV` or `JSON`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
        }
    }

    /// Whether an object of this name in a folder is read as a file of
    /// this format: one named for it (`.csv`; `.json`, `.ndjson` or
    /// `.jsonl`), or one whose name has no extension at all
    /// (`part-00000`), which only the job's `Format` can tell. Files named
    /// for something else (`.txt`, the other format) are skipped, as the
    /// service skips files "that use different formats"; so are folder
    /// markers (names ending in `/`).
    pub fn takes(self, name: &str) -> bool {
        let file = name.rsplit('/').next().unwrap_or(name);
        // A compressed file is named for what it holds (`x.ndjson.gz`).
        let file = gzip_inner(file).unwrap_or(file);
        let Some((_, ext)) = file.rsplit_once('.') else {
            return !file.is_empty();
        };
        let ext = ext.to_ascii_lowercase();
        match self {
            Format::Csv => ext == "csv",
            Format::Json => ["json", "ndjson", "jsonl"].contains(&ext.as_str()),
        }
    }
}

/// The name a gzip-compressed object's name (`x.ndjson.gz`) holds
/// (`x.ndjson`), or `None` when the name does not end in `.gz`.
pub fn gzip_inner(name: &str) -> Option<&str> {
    let at = name.len().checked_sub(3)?;
    (name.is_char_boundary(at) && name[at..].eq_ignore_ascii_case(".gz")).then(|| &name[..at])
}

/// Endpoint rows: checked and normalized ([`Endpoint::check`]), keyed by
/// their [`Identity`] so that the last row of an endpoint wins, and kept as
/// the endpoint's JSON. [`decode`] gives one back.
///
/// # Example
///
/// ```
/// use sluice::endpoints::{EndpointMapper, Format, decode};
/// use sluice::ingest::{IngestBuilder, Input};
///
/// let csv = "ChannelType,Address,User.UserId\n\
///            EMAIL,Ann@Example.com,u1\n\
///            EMAIL,ann@example.COM,u2\n\
///            FAX,1,u3\n";
/// let outcome = IngestBuilder::with_mapper(EndpointMapper::new(Format::Csv))
///     .build()?
///     .run(vec![Input::bytes("e.csv", csv.as_bytes())])?;
/// let s = &outcome.summary;
/// assert_eq!((s.processed, s.unique, s.duplicates, s.failed), (3, 1, 1, 1));
/// assert!(s.failures[0].to_string().starts_with("e.csv:4: record 3: ChannelType: \"FAX\""));
/// let record = outcome.records.iter().next().unwrap();
/// let (_, endpoint) = decode(&record)?;
/// assert_eq!(endpoint.address.as_deref(), Some("ann@example.com"));
/// assert_eq!(endpoint.user.unwrap().user_id.as_deref(), Some("u2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct EndpointMapper {
    format: Format,
    phone: PhoneNormalizer,
}

impl EndpointMapper {
    /// Endpoints in files of `format`; SMS and voice numbers without a
    /// country code are in region `US` unless the run says otherwise.
    pub fn new(format: Format) -> EndpointMapper {
        EndpointMapper {
            format,
            phone: PhoneNormalizer::new(),
        }
    }

    /// The file format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// One line of newline-delimited JSON into `out`.
    fn map_json(&self, line: &str, out: &mut RowOut<'_>) -> Result<(), Refusal> {
        let mut e: Endpoint = serde_json::from_str(line)
            .map_err(|err| Refusal::whole(format!("not an endpoint: {err}")))?;
        e.check(&self.phone)?;
        let identity = e.identity().ok_or_else(|| {
            Refusal::whole("an endpoint needs an Id, or a ChannelType and an Address")
        })?;
        identity.write_key(out.buf());
        out.end_key();
        // Writing into a Vec cannot fail, and an Endpoint always serializes.
        let _ = serde_json::to_writer(out.buf(), &e);
        Ok(())
    }
}

impl RowMapper for EndpointMapper {
    /// The CSV layout of an input; `None` for JSON.
    type Plan = Option<Layout>;
    type Scratch = Scratch;

    fn input_format(&self) -> InputFormat {
        match self.format {
            Format::Csv => InputFormat::Csv,
            Format::Json => InputFormat::Ndjson,
        }
    }

    fn set_region(&mut self, region: &str) -> Result<(), UnknownRegion> {
        self.phone = PhoneNormalizer::with_region(region)?;
        Ok(())
    }

    fn plan(&self, header: &[Arc<str>]) -> Result<Option<Layout>, HeaderError> {
        match self.format {
            Format::Json => Ok(None),
            Format::Csv => Columns::from_header(header.iter().map(|h| &**h))
                .map(|c| Some(Layout::new(c)))
                .map_err(HeaderError::Invalid),
        }
    }

    fn scratch(&self) -> Scratch {
        Scratch::default()
    }

    #[inline]
    fn map(
        &self,
        plan: &Option<Layout>,
        record: Record<'_>,
        out: &mut RowOut<'_>,
        scratch: &mut Scratch,
        _warnings: &mut [u64],
    ) -> Result<(), FailureReason> {
        match (record, plan) {
            (Record::Csv(fields), Some(layout)) => {
                layout.encode(&fields, &self.phone, scratch, out)
            }
            (Record::Json(line), _) => self.map_json(line, out),
            (Record::Csv(_), None) => Err(Refusal::whole("a JSON import got a CSV row")),
        }
        .map_err(FailureReason::from)
    }
}

/// The endpoint a kept row holds, with its identity.
///
/// # Errors
///
/// When the row was not made by an [`EndpointMapper`] (its bytes do not
/// read back).
pub fn decode(record: &UniqueRecord<'_, EndpointMapper>) -> Result<(Identity, Endpoint), String> {
    let identity = Identity::from_key(record.key_bytes())
        .ok_or_else(|| "a kept row whose key is not an endpoint identity".to_owned())?;
    let endpoint = serde_json::from_slice(record.rest_bytes())
        .map_err(|e| format!("a kept row that is not an endpoint: {e}"))?;
    Ok((identity, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{IngestBuilder, Input, Outcome};

    fn run(
        format: Format,
        files: &[(&str, &str)],
        piece: u64,
        threads: usize,
    ) -> Outcome<EndpointMapper> {
        let inputs = files
            .iter()
            .map(|(n, t)| Input::bytes(n, t.as_bytes().to_vec()))
            .collect();
        IngestBuilder::with_mapper(EndpointMapper::new(format))
            .threads(threads)
            .piece_size(piece)
            .places(true)
            .tolerate_bad_inputs(true)
            .build()
            .unwrap()
            .run(inputs)
            .unwrap()
    }

    /// Endpoints in input order of their kept rows, with their places.
    fn endpoints(o: &Outcome<EndpointMapper>) -> Vec<(Identity, Endpoint, String)> {
        o.records
            .in_input_order()
            .map(|r| {
                let (id, e) = decode(&r).unwrap();
                let p = r.place().unwrap();
                (
                    id,
                    e,
                    format!(
                        "{}:{}: record {}",
                        p.input, p.position.line, p.position.record
                    ),
                )
            })
            .collect()
    }

    fn failures(o: &Outcome<EndpointMapper>) -> Vec<String> {
        o.summary.failures.iter().map(ToString::to_string).collect()
    }

    const CSV: &str = "ChannelType,Address,User.UserId,Attributes.Team\n\
        EMAIL,Ann@Example.com,u1,red\n\
        SMS,(415) 555-0132,u2,\"blue\nteam\"\n\
        FAX,1,u3,x\n\
        EMAIL,ann@example.COM,u1b,green\n\
        EMAIL,no-at,u4,y\n\
        SMS,415 555 0199,u5,\n";

    #[test]
    fn the_same_answer_whatever_the_piece_size_or_threads() {
        let want = run(Format::Csv, &[("a.csv", CSV)], 1 << 20, 1);
        let s = &want.summary;
        assert_eq!(
            (s.processed, s.failed, s.duplicates, s.unique),
            (6, 2, 1, 3)
        );
        assert_eq!(
            failures(&want),
            [
                "a.csv:5: record 3: ChannelType: \"FAX\" is not one of PUSH, GCM, APNS, \
                 APNS_SANDBOX, APNS_VOIP, APNS_VOIP_SANDBOX, ADM, SMS, VOICE, EMAIL, BAIDU, \
                 CUSTOM, IN_APP",
                "a.csv:7: record 5: Address: \"no-at\" is not a valid EMAIL address: no '@'"
            ]
        );
        let kept = endpoints(&want);
        let (_, first, at) = &kept[1];
        assert_eq!(first.address.as_deref(), Some("ann@example.com"));
        assert_eq!(first.user.as_ref().unwrap().user_id.as_deref(), Some("u1b"));
        assert_eq!(at, "a.csv:6: record 4");
        assert_eq!(
            kept[0].1.attributes.as_ref().unwrap()["Team"],
            ["blue\nteam"]
        );
        for piece in [1, 7, 30, 64] {
            for threads in [1, 3] {
                let got = run(Format::Csv, &[("a.csv", CSV)], piece, threads);
                assert_eq!(endpoints(&got), kept, "piece {piece}");
                assert_eq!(failures(&got), failures(&want), "piece {piece}");
                assert_eq!(got.summary.completed_pieces, got.summary.total_pieces);
            }
        }
    }

    #[test]
    fn json_lines_and_their_failures() {
        let text = "{\"ChannelType\":\"EMAIL\",\"Address\":\"a@b.co\",\"Metrics\":{\"m\":2}}\n\
                    \n\
                    {\"ChannelType\":\"EMAIL\",\"Address\":\"c@d.co\"} trailing\n\
                    {\"Id\":\"x1\",\"Attributes\":{\"k\":[\"v\"]}}\r\n";
        for piece in [1, 10, 1000] {
            let got = run(Format::Json, &[("e.ndjson", text)], piece, 2);
            let s = &got.summary;
            assert_eq!((s.processed, s.failed, s.unique), (3, 1, 2));
            assert!(
                failures(&got)[0].starts_with("e.ndjson:3: record 2: not an endpoint: trailing"),
                "{:?}",
                failures(&got)
            );
            assert_eq!(endpoints(&got)[1].2, "e.ndjson:4: record 3");
        }
    }

    #[test]
    fn a_bad_header_fails_its_input_and_the_others_are_read() {
        let got = run(
            Format::Csv,
            &[
                ("bad.csv", "Address,Nick\nx,y\nz,w\n"),
                (
                    "open.csv",
                    "ChannelType,Address\nEMAIL,a@b.co\nEMAIL,\"c@d.co\n",
                ),
            ],
            4,
            2,
        );
        let s = &got.summary;
        // bad.csv fails as one piece; open.csv's broken record fails its
        // piece too.
        assert_eq!((s.failed_pieces, s.unique), (2, 1), "{:?}", failures(&got));
        assert_eq!(
            failures(&got),
            [
                "bad.csv:1: the header: column 2 \"Nick\" is not an endpoint attribute \
                 (ChannelType, Address, Id, RequestId, OptOut, EffectiveDate, EndpointStatus, \
                 Attributes.<name>, Metrics.<name>, User.UserId, User.UserAttributes.<name>, \
                 Demographic.*, Location.*)",
                "open.csv:3: record 2: a quoted field opens in this record and never closes; \
                 the input ends inside it",
            ]
        );
    }

    #[test]
    fn gzip_names_are_told_by_their_last_three_bytes_on_char_boundaries() {
        assert_eq!(gzip_inner("a/x.ndjson.GZ"), Some("a/x.ndjson"));
        assert_eq!(gzip_inner(".gz"), Some(""));
        for n in ["gz", "x.gzip", "x.tgz", "\u{20ac}gz", "x\u{e9}"] {
            assert_eq!(gzip_inner(n), None, "{n}");
        }
    }

    #[test]
    fn a_folder_gives_files_named_for_the_format_or_for_none() {
        for n in ["a/b/C.CSV", "part-00000", "out/part-00001", "x.csv.gz"] {
            assert!(Format::Csv.takes(n), "{n}");
        }
        for n in [
            "a.json",
            "a.NDJSON",
            "README.txt",
            "x.ndjson.gz",
            "folder/",
            "",
        ] {
            assert!(!Format::Csv.takes(n), "{n}");
        }
        for n in [
            "x.json",
            "x.ndjson",
            "x.JSONL",
            "part-00000",
            "e/part-00001.ndjson.gz",
        ] {
            assert!(Format::Json.takes(n), "{n}");
        }
        for n in ["x.csv", "X.Csv", "notes.txt", "folder/"] {
            assert!(!Format::Json.takes(n), "{n}");
        }
    }

    #[test]
    fn identities_round_trip_as_keys() {
        for id in [
            Identity::Id("ep-1".into()),
            Identity::Address {
                channel: "EMAIL".into(),
                address: "a@b.co".into(),
            },
        ] {
            assert_eq!(Identity::from_key(&id.key()), Some(id));
        }
        assert_eq!(Identity::from_key(b""), None);
        assert_eq!(Identity::from_key(b"Xabc"), None);
    }
}
