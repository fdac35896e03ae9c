//! Errors that stop a run before it starts, and failures of single rows.
//!
//! Positions are data ([`Position`]), not text: a caller can point at the
//! place in the input, and messages are built from them only when shown.

use std::fmt;
use std::io;
use std::sync::Arc;

use super::normalize::{ContentType, Invalid, UnknownRegion};

/// A place in an input.
///
/// `byte` starts at 0, `line` at 1, `record` at 0. The header row is record
/// 0, so the first data row is record 1.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash, Ord, PartialOrd)]
pub struct Position {
    /// Offset of the first byte of the record in the input, from 0.
    pub byte: u64,
    /// Line of the first byte of the record, from 1 (lines end at `\n`).
    pub line: u64,
    /// Index of the record, the header being record 0.
    pub record: u64,
}

/// An error that keeps a run from starting or from going on.
///
/// Inspect it with [`Error::kind`]; its `Display` names the input, column
/// or mapping key concerned.
#[derive(Debug)]
pub struct Error(Box<ErrorKind>);

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An input could not be opened or read.
    Io {
        /// The input's name.
        input: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An input has no header row (it is empty, or only blank lines).
    NoHeader {
        /// The input's name.
        input: String,
    },
    /// A header name is not valid UTF-8.
    HeaderNotUtf8 {
        /// The input's name.
        input: String,
        /// The column, from 1.
        column: usize,
    },
    /// Two header columns have the same name.
    DuplicateColumn {
        /// The input's name.
        input: String,
        /// The repeated name.
        name: String,
        /// The first column with that name, from 1.
        first: usize,
        /// The second column with that name, from 1.
        second: usize,
    },
    /// A column the mapping reads is not in an input's header.
    MissingColumn {
        /// The input's name.
        input: String,
        /// The missing column.
        column: String,
        /// The mapping field that reads it.
        field: String,
    },
    /// The mapping is not usable.
    Mapping(MappingError),
    /// The phone region is unknown.
    Region(UnknownRegion),
    /// A setting is out of range.
    Config {
        /// The setting.
        setting: &'static str,
        /// What is allowed.
        expected: &'static str,
    },
    /// A header the mapper cannot use.
    Header {
        /// The input's name.
        input: String,
        /// What is wrong, said in full.
        problem: String,
    },
    /// The unique records of one run exceed what one run can hold.
    Capacity,
}

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// Unwraps the kind.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// What is wrong, without the input's name (which a failure of the
    /// input already carries).
    pub fn detail(&self) -> String {
        match &*self.0 {
            ErrorKind::Io { source, .. } => format!("could not be read: {source}"),
            ErrorKind::NoHeader { .. } => "no header row (the input is empty)".to_owned(),
            ErrorKind::HeaderNotUtf8 { column, .. } => {
                format!("the header: column {column} is not valid UTF-8")
            }
            ErrorKind::DuplicateColumn {
                name,
                first,
                second,
                ..
            } => format!("the header: duplicate name {name:?} in columns {first} and {second}"),
            ErrorKind::MissingColumn { column, field, .. } => {
                format!("the header: no column {column:?} (mapped by field {field:?})")
            }
            ErrorKind::Header { problem, .. } => format!("the header: {problem}"),
            _ => self.to_string(),
        }
    }

    pub(crate) fn io(input: &str, source: io::Error) -> Error {
        ErrorKind::Io {
            input: input.to_owned(),
            source,
        }
        .into()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error(Box::new(kind))
    }
}

impl From<MappingError> for Error {
    fn from(e: MappingError) -> Error {
        ErrorKind::Mapping(e).into()
    }
}

impl From<UnknownRegion> for Error {
    fn from(e: UnknownRegion) -> Error {
        ErrorKind::Region(e).into()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            ErrorKind::Io { input, source } => write!(f, "{input}: {source}"),
            ErrorKind::NoHeader { input } => {
                write!(f, "{input}: no header row (the input is empty)")
            }
            ErrorKind::HeaderNotUtf8 { input, column } => {
                write!(
                    f,
                    "{input}: line 1: header column {column} is not valid UTF-8"
                )
            }
            ErrorKind::DuplicateColumn {
                input,
                name,
                first,
                second,
            } => write!(
                f,
                "{input}: line 1: duplicate header name {name:?} in columns {first} and {second}"
            ),
            ErrorKind::MissingColumn {
                input,
                column,
                field,
            } => write!(
                f,
                "{input}: line 1: no column {column:?} in the header (mapped by field {field:?})"
            ),
            ErrorKind::Mapping(e) => write!(f, "{e}"),
            ErrorKind::Region(e) => write!(f, "{e}"),
            ErrorKind::Config { setting, expected } => {
                write!(f, "{setting} must be {expected}")
            }
            ErrorKind::Header { input, problem } => write!(f, "{input}: line 1: {problem}"),
            ErrorKind::Capacity => f.write_str(
                "too much unique data for one run (more than 512 GiB of normalized records)",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            ErrorKind::Io { source, .. } => Some(source),
            ErrorKind::Mapping(e) => Some(e),
            ErrorKind::Region(e) => Some(e),
            _ => None,
        }
    }
}

/// A mapping that cannot be used, with the key that is wrong.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MappingError {
    /// Where in the mapping: `Fields.Email.Source`, `UniqueKey`, or empty
    /// for the whole document.
    pub key: String,
    /// What is wrong.
    pub problem: MappingProblem,
}

/// What is wrong with a mapping.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum MappingProblem {
    /// The document is not valid JSON.
    Json {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// A value has the wrong JSON type.
    Type(&'static str),
    /// A member the engine does not know.
    UnknownMember,
    /// A required member is missing.
    Missing,
    /// There are no fields.
    NoFields,
    /// A value does not match the required pattern or length.
    Pattern(&'static str),
    /// Two fields write the same target, or one target is inside another.
    TargetClash {
        /// The other field.
        other: String,
    },
    /// A unique key names a field that is not mapped.
    UnknownKeyField(String),
    /// A unique key names a field twice.
    RepeatedKeyField(String),
    /// A content type name is not one of the five.
    ContentType(String),
    /// A number is out of its range.
    OutOfRange(&'static str),
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.key.is_empty() {
            "mapping".to_owned()
        } else {
            format!("mapping key {}", self.key)
        };
        match &self.problem {
            MappingProblem::Json {
                line,
                column,
                message,
            } => write!(
                f,
                "{at}: invalid JSON at line {line}, column {column}: {message}"
            ),
            MappingProblem::Type(t) => write!(f, "{at}: must be {t}"),
            MappingProblem::UnknownMember => write!(f, "{at}: unknown member"),
            MappingProblem::Missing => write!(f, "{at}: required but missing"),
            MappingProblem::NoFields => write!(f, "{at}: no fields are mapped"),
            MappingProblem::Pattern(p) => write!(f, "{at}: must be {p}"),
            MappingProblem::TargetClash { other } => {
                write!(f, "{at}: clashes with the target of field {other:?}")
            }
            MappingProblem::UnknownKeyField(k) => write!(f, "{at}: {k:?} is not a field name"),
            MappingProblem::RepeatedKeyField(k) => write!(f, "{at}: {k:?} is named twice"),
            MappingProblem::ContentType(c) => write!(
                f,
                "{at}: unknown content type {c:?} (expected STRING, NUMBER, PHONE_NUMBER, EMAIL_ADDRESS or NAME)"
            ),
            MappingProblem::OutOfRange(r) => write!(f, "{at}: must be {r}"),
        }
    }
}

impl std::error::Error for MappingError {}

/// A row that was not kept, or a part of an input that could not be read.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Failure {
    /// The input's name.
    pub input: Arc<str>,
    /// Where the row starts (record 0 for the input as a whole).
    pub position: Position,
    /// Why it failed.
    pub reason: FailureReason,
    /// Which of the run's inputs, from 0 in the order they were given.
    /// Failures in input order are failures by `(input_index,
    /// position.record)`, the same order as a kept row's
    /// [`Place`](super::Place).
    pub input_index: usize,
}

impl Failure {
    /// Where it is in input order: the input, then the record.
    pub fn order(&self) -> (usize, u64) {
        (self.input_index, self.position.record)
    }
}

/// Why a row failed.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The row has a different number of fields than the header.
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A field is not valid UTF-8.
    InvalidUtf8 {
        /// The column, from 1.
        column: usize,
        /// The column's header name.
        name: Arc<str>,
    },
    /// A unique-key field is empty after normalization.
    EmptyKey {
        /// The mapping field.
        field: Arc<str>,
        /// Its column.
        column: Arc<str>,
    },
    /// A unique-key field is not a valid value of its content type.
    InvalidKey {
        /// The mapping field.
        field: Arc<str>,
        /// Its column.
        column: Arc<str>,
        /// Its content type.
        content_type: ContentType,
        /// What is wrong.
        problem: Invalid,
    },
    /// A quoted field opens in this row and never closes: the input ends
    /// inside it. The row and everything after it are one broken record.
    UnterminatedQuote,
    /// The input could not be read from this point on.
    Read {
        /// The I/O error, as text.
        message: String,
        /// Offset of the failed read in the input.
        byte: u64,
    },
    /// A line of newline-delimited JSON is not valid UTF-8.
    NotText {
        /// Bytes of the line that are valid.
        at: usize,
    },
    /// The mapper refused the row: a member breaks a rule of its format.
    Invalid {
        /// The member (a field or attribute name), if one is at fault.
        member: Option<Arc<str>>,
        /// What is wrong.
        message: String,
    },
    /// The input as a whole could not be used (it could not be opened, or
    /// its header was refused); none of its rows was read.
    Unusable {
        /// What is wrong.
        problem: String,
    },
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            FailureReason::InvalidUtf8 { column, name } => {
                write!(f, "invalid UTF-8 in column {column} ({name:?})")
            }
            FailureReason::EmptyKey { field, column } => {
                write!(f, "unique key field {field:?} (column {column:?}) is empty")
            }
            FailureReason::InvalidKey {
                field,
                column,
                content_type,
                problem,
            } => write!(
                f,
                "unique key field {field:?} (column {column:?}) is not a valid {content_type}: {problem}"
            ),
            FailureReason::UnterminatedQuote => f.write_str(
                "a quoted field opens in this record and never closes; the input ends inside it",
            ),
            FailureReason::Read { message, byte } => {
                write!(
                    f,
                    "read error at byte {byte}: {message}; the rest of the input is lost"
                )
            }
            FailureReason::NotText { at } => {
                write!(f, "is not valid UTF-8 (after byte {at} of the line)")
            }
            FailureReason::Invalid {
                member: Some(m),
                message,
            } => write!(f, "{m}: {message}"),
            FailureReason::Invalid {
                member: None,
                message,
            } => f.write_str(message),
            FailureReason::Unusable { problem } => f.write_str(problem),
        }
    }
}

impl fmt::Display for Failure {
    /// `input:line: record N: reason`, or `input:line: reason` for the
    /// input as a whole (record 0).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Failure::describe(
            &self.input,
            self.position.line,
            self.position.record,
            &self.reason,
        ))
    }
}

impl Failure {
    /// A failure as its `Display` shows it, from its parts: for failures
    /// kept as text (a run of one range, placed once the ranges before it
    /// are counted).
    pub fn describe(input: &str, line: u64, record: u64, reason: &dyn fmt::Display) -> String {
        if record == 0 {
            format!("{input}:{line}: {reason}")
        } else {
            format!("{input}:{line}: record {record}: {reason}")
        }
    }
}
