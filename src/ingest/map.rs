/*!
What a row becomes: the [`RowMapper`] trait the pipeline runs every record
through, and [`FieldMapper`], the mapper of a [`Mapping`] (profiles).

# Design

The pipeline knows records, not what they mean. For every record it asks
its mapper for one *encoded row*: a key (the bytes that make two rows the
same) followed by the rest (whatever the mapper needs to give the row back
later). The dedup tables keep the last encoded row of every key, as bytes,
so a row costs its encoded size and no allocation, whatever it becomes.
The mapper turns the kept bytes back into its own type when the rows are
written ([`UniqueRecord::key_bytes`], [`UniqueRecord::rest_bytes`]).

A mapper sees each input's header once ([`RowMapper::plan`]) and then
every record of that input with the plan it made. Records are CSV fields
(already checked to be as many as the header's and valid UTF-8) or one
line of newline-delimited JSON (valid UTF-8, not blank).

# Advice for hackers

* Write the key first, call [`RowOut::end_key`], then the rest. Append only:
  the bytes before the row belong to other rows of the piece.
* A mapper is shared by every worker (`Sync`); per-worker caches go in its
  [`RowMapper::Scratch`].
* Whatever a mapper does must not depend on the piece size or the thread:
  the same record with the same plan gives the same row.

[`UniqueRecord::key_bytes`]: super::UniqueRecord::key_bytes
[`UniqueRecord::rest_bytes`]: super::UniqueRecord::rest_bytes
*/

use std::sync::Arc;

use super::error::FailureReason;
use super::mapping::Mapping;
use super::normalize::{Cache, ContentType, Normalizer, UnknownRegion};
use super::parse::Fields;

/// How an input's bytes hold records.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub enum InputFormat {
    /// Comma-separated values with a header row (the delimiter and quote
    /// are the run's).
    #[default]
    Csv,
    /// Newline-delimited JSON: one value per line, no header; blank lines
    /// are skipped.
    Ndjson,
}

/// One record as the mapper gets it.
#[derive(Clone, Copy, Debug)]
pub enum Record<'a> {
    /// A CSV row: as many fields as the header has, all valid UTF-8.
    Csv(Fields<'a>),
    /// One line of newline-delimited JSON, without its line terminator
    /// (`\n` or `\r\n`); valid UTF-8, not blank.
    Json(&'a str),
}

/// What is wrong with an input's header, as a mapper says it.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Two columns have the same name, and the mapper cannot tell which
    /// one a field means.
    Duplicate {
        /// The repeated name.
        name: String,
        /// The first column with that name, from 1.
        first: usize,
        /// The second, from 1.
        second: usize,
    },
    /// A column the mapper reads is not in the header.
    MissingColumn {
        /// The missing column.
        column: String,
        /// What reads it (a field name).
        field: String,
    },
    /// Anything else, said in full (`column 2 "Nick" is not …`).
    Invalid(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Duplicate {
                name,
                first,
                second,
            } => write!(
                f,
                "duplicate header name {name:?} in columns {first} and {second}"
            ),
            HeaderError::MissingColumn { column, field } => write!(
                f,
                "no column {column:?} in the header (mapped by field {field:?})"
            ),
            HeaderError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Where a mapper writes one encoded row: its key, then the rest.
///
/// The buffer is the piece's arena: append to it, never shorten it below
/// where the row began ([`RowOut::start`]).
#[derive(Debug)]
pub struct RowOut<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    key_end: Option<usize>,
}

impl<'a> RowOut<'a> {
    /// A row appended to `buf` (the pipeline's arena; a plain `Vec` in
    /// tests of a mapper).
    pub fn new(buf: &'a mut Vec<u8>) -> RowOut<'a> {
        let start = buf.len();
        RowOut {
            buf,
            start,
            key_end: None,
        }
    }

    /// The buffer to append the row's bytes to.
    #[inline]
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// Where this row's bytes begin in [`RowOut::buf`].
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// Marks the end of the key: what was written so far is the key, what
    /// follows is the rest.
    #[inline]
    pub fn end_key(&mut self) {
        self.key_end = Some(self.buf.len());
    }

    /// The row written so far: its key and its rest (all of it is key
    /// until [`RowOut::end_key`]).
    pub fn row(&self) -> (&[u8], &[u8]) {
        let end = self.buf.len();
        let key_end = self.key_end.unwrap_or(end).clamp(self.start.min(end), end);
        let start = self.start.min(key_end);
        (&self.buf[start..key_end], &self.buf[key_end..])
    }

    /// The key's and the rest's lengths, once the mapper is done; `None`
    /// when it broke the contract (shortened the buffer, or marked the key's
    /// end in a place it then cut off).
    pub(crate) fn lengths(&self) -> Option<(usize, usize)> {
        let end = self.buf.len();
        let key_end = self.key_end.unwrap_or(end);
        (self.start <= key_end && key_end <= end).then(|| (key_end - self.start, end - key_end))
    }
}

/// Turns records into encoded rows: what a row becomes.
///
/// See the [module documentation](self) for the contract.
pub trait RowMapper: Send + Sync {
    /// What the mapper learns from one input's header (column positions,
    /// say).
    type Plan: Send + Sync;
    /// Per-worker scratch space (caches, buffers).
    type Scratch: Send;

    /// How the inputs hold records.
    fn input_format(&self) -> InputFormat {
        InputFormat::Csv
    }

    /// Sets the region of phone numbers written without a country code
    /// (ISO 3166-1 alpha-2). Mappers that read no phone numbers ignore it.
    ///
    /// # Errors
    ///
    /// When the region is unknown.
    fn set_region(&mut self, region: &str) -> Result<(), UnknownRegion> {
        let _ = region;
        Ok(())
    }

    /// Reads one input's header (empty for newline-delimited JSON).
    ///
    /// # Errors
    ///
    /// What makes the input unusable: the run stops before reading a row
    /// (or, when it tolerates bad inputs, the input fails as a whole).
    fn plan(&self, header: &[Arc<str>]) -> Result<Self::Plan, HeaderError>;

    /// Fresh scratch space for one worker.
    fn scratch(&self) -> Self::Scratch;

    /// The names that field warnings are counted under, in order; `map`
    /// adds to `warnings[i]` for the i-th.
    fn warning_fields(&self) -> Vec<Arc<str>> {
        Vec::new()
    }

    /// Maps one record into `out`.
    ///
    /// # Errors
    ///
    /// Why the row fails; whatever it wrote is discarded.
    fn map(
        &self,
        plan: &Self::Plan,
        record: Record<'_>,
        out: &mut RowOut<'_>,
        scratch: &mut Self::Scratch,
        warnings: &mut [u64],
    ) -> Result<(), FailureReason>;
}

/// The mapper of a [`Mapping`]: mapped fields normalized by content type,
/// keyed by the unique key's fields.
///
/// A row's key is the key field's normalized value (or, for a key of
/// several fields, each value prefixed by its length as a LEB128 varint, in
/// key order); its rest is every other field's value, each prefixed by its
/// length, in mapping order. A non-key field that does not normalize keeps
/// its trimmed value and counts as a warning of its field.
#[derive(Clone, Debug)]
pub struct FieldMapper {
    mapping: Arc<Mapping>,
    normalizer: Normalizer,
    /// The non-key fields, in mapping order.
    rest_fields: Vec<usize>,
}

/// A [`FieldMapper`]'s plan of one input: the column of each field.
#[derive(Clone, Debug)]
pub struct FieldPlan {
    sources: Vec<usize>,
}

impl FieldMapper {
    /// The mapper of `mapping`, with phone numbers in region `US` by
    /// default.
    pub fn new(mapping: Mapping) -> FieldMapper {
        let rest_fields = (0..mapping.fields().len())
            .filter(|&i| mapping.key_position(i).is_none())
            .collect();
        FieldMapper {
            mapping: Arc::new(mapping),
            normalizer: Normalizer::new(),
            rest_fields,
        }
    }

    /// The mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }
}

impl RowMapper for FieldMapper {
    type Plan = FieldPlan;
    type Scratch = Cache;

    fn set_region(&mut self, region: &str) -> Result<(), UnknownRegion> {
        self.normalizer = Normalizer::with_region(region)?;
        Ok(())
    }

    fn plan(&self, header: &[Arc<str>]) -> Result<FieldPlan, HeaderError> {
        let mut sorted: Vec<(&str, usize)> =
            header.iter().enumerate().map(|(i, h)| (&**h, i)).collect();
        sorted.sort_unstable();
        // Names that repeat are refused: a mapping could not say which
        // column it means. Blank names cannot be mapped at all, so several
        // of them (`a,b,,` with trailing commas) are harmless.
        for w in sorted.windows(2) {
            if w[0].0 == w[1].0 && !w[0].0.is_empty() {
                return Err(HeaderError::Duplicate {
                    name: w[0].0.to_owned(),
                    first: w[0].1 + 1,
                    second: w[1].1 + 1,
                });
            }
        }
        let mut sources = Vec::with_capacity(self.mapping.fields().len());
        for f in self.mapping.fields() {
            let col = header
                .iter()
                .position(|h| **h == *f.column)
                .ok_or_else(|| HeaderError::MissingColumn {
                    column: f.column.to_string(),
                    field: f.name.to_string(),
                })?;
            sources.push(col);
        }
        Ok(FieldPlan { sources })
    }

    fn scratch(&self) -> Cache {
        Cache::new()
    }

    fn warning_fields(&self) -> Vec<Arc<str>> {
        self.mapping
            .fields()
            .iter()
            .map(|f| Arc::clone(&f.name))
            .collect()
    }

    /// Values are normalized straight into the arena behind one-byte length
    /// placeholders, which are widened in place in the rare case that a
    /// length needs more than one byte: no value is copied twice.
    #[inline]
    fn map(
        &self,
        plan: &FieldPlan,
        record: Record<'_>,
        out: &mut RowOut<'_>,
        cache: &mut Cache,
        warnings: &mut [u64],
    ) -> Result<(), FailureReason> {
        let Record::Csv(fields) = record else {
            return Err(FailureReason::Invalid {
                member: None,
                message: "a mapping of fields reads CSV rows, not JSON".into(),
            });
        };
        let mapping = &*self.mapping;
        let normalizer = &self.normalizer;
        let single_key = mapping.key_fields().len() == 1;
        let arena = out.buf();
        for &fi in mapping.key_fields() {
            let f = &mapping.fields()[fi];
            let raw = fields.str(plan.sources[fi]).unwrap_or_default();
            let len_at = if single_key {
                None
            } else {
                Some(open_len(arena))
            };
            let value_start = arena.len();
            if let Err(problem) = normalizer.normalize_cached(f.content_type, raw, arena, cache) {
                return Err(FailureReason::InvalidKey {
                    field: Arc::clone(&f.name),
                    column: Arc::clone(&f.column),
                    content_type: f.content_type,
                    problem,
                });
            }
            let value = &arena[value_start..];
            let blank = value.is_empty()
                || (f.content_type == ContentType::String
                    && std::str::from_utf8(value).is_ok_and(|s| s.trim().is_empty()));
            if blank {
                return Err(FailureReason::EmptyKey {
                    field: Arc::clone(&f.name),
                    column: Arc::clone(&f.column),
                });
            }
            if let Some(at) = len_at {
                close_len(arena, at);
            }
        }
        out.end_key();
        let arena = out.buf();
        for &fi in &self.rest_fields {
            let f = &mapping.fields()[fi];
            let raw = fields.str(plan.sources[fi]).unwrap_or_default();
            let at = open_len(arena);
            if normalizer
                .normalize_cached(f.content_type, raw, arena, cache)
                .is_err()
            {
                arena.truncate(at + 1);
                arena.extend_from_slice(super::normalize::trim(raw).as_bytes());
                warnings[fi] += 1;
            }
            close_len(arena, at);
        }
        Ok(())
    }
}

/// Appends a one-byte length placeholder and returns its offset.
#[inline(always)]
fn open_len(buf: &mut Vec<u8>) -> usize {
    buf.push(0);
    buf.len() - 1
}

/// Sets the placeholder at `at` to the length of everything after it,
/// widening it into a longer varint if need be.
#[inline(always)]
fn close_len(buf: &mut Vec<u8>, at: usize) {
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        widen_len(buf, at, len);
    }
}

#[cold]
#[inline(never)]
fn widen_len(buf: &mut Vec<u8>, at: usize, len: usize) {
    let mut v = Vec::with_capacity(10);
    super::dedup::put_varint(&mut v, len as u64);
    buf.splice(at..at + 1, v);
}
