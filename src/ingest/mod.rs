/*!
The ingest engine: CSV bytes in, normalized unique records out.

It knows nothing of AWS, HTTP or storage. Layers, bottom up:

* [`split`]: quote-aware record boundaries, so that pieces can be parsed
  independently;
* [`parse`]: records out of a piece (a SIMD fast path checked against
  `csv-core`, which parses everything else);
* [`normalize`]: field values by content type;
* [`map`]: what a row becomes ([`RowMapper`]; [`FieldMapper`] for a
  [`Mapping`]);
* `dedup`: sharded last-row-wins tables;
* [`Ingest`]: the pipeline that runs them on threads, with [`Progress`]
  counters and a [`Summary`];
* [`output`]: the surviving records as CSV or NDJSON.
*/

mod dedup;
mod error;
pub mod map;
mod mapping;
pub mod normalize;
pub mod output;
pub mod parse;
mod pipeline;
mod source;
pub mod split;

pub use error::{Error, ErrorKind, Failure, FailureReason, MappingError, MappingProblem, Position};
pub use map::{FieldMapper, HeaderError, InputFormat, Record, RowMapper, RowOut};
pub use mapping::{Field, Mapping};
pub use pipeline::{
    ByteRange, DEFAULT_PIECE_SIZE, Ingest, IngestBuilder, MAX_FAILURES, MAX_PIECE_SIZE, Outcome,
    PieceDone, Place, Progress, ProgressSnapshot, RangePlan, RecordHandle, Records, Summary,
    UniqueRecord,
};
pub use source::{Input, OpenAt};
