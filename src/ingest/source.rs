/*!
Bytes in: inputs, their headers, and the reader that cuts them into pieces.

An input is a file, bytes in memory, a reader, or something that can be
opened at any offset ([`Input::reopenable`], such as an object in a bucket
read with ranged requests): that kind is read twice, its header at once and
its body only when the reader gets to it, so that a run over many inputs
holds one open stream at a time.

# Pieces on a fixed grid

With piece size `S`, piece `k` of an input holds the records that *start* in
body bytes `[k·S, (k+1)·S)`. Its bytes run from the first record start at
or after `k·S` to the first at or after `(k+1)·S`, so every piece ends on a
record boundary, and an input of `L` body bytes has exactly `⌈L/S⌉` pieces,
known before parsing starts. A record longer than `S` leaves the cells it
covers empty: those pieces complete at once with no rows.
*/

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use csv_core::{ReadRecordResult, ReaderBuilder};

use super::error::{Error, ErrorKind};
use super::map::InputFormat;
use super::parse::{count_newlines, primed_reader};
use super::split::{SplitResult, Splitter};

/// How much to read at a time while looking for a boundary.
const READ_STEP: usize = 64 * 1024;
/// Piece buffers need this much room beyond the piece size: the tail of the
/// read that found the previous boundary, plus the reads that find the next.
pub(crate) const SLACK: usize = 4 * READ_STEP;

/// Opens an input at a byte offset.
pub type OpenAt = Box<dyn Fn(u64) -> io::Result<Box<dyn Read + Send>> + Send + Sync>;

/// One input: CSV with a header row, or newline-delimited JSON.
pub struct Input {
    name: Arc<str>,
    kind: InputKind,
}

enum InputKind {
    Path(PathBuf),
    Bytes(Arc<[u8]>),
    Reader {
        reader: Box<dyn Read + Send>,
        len: Option<u64>,
    },
    Reopenable {
        open: OpenAt,
        len: u64,
    },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Input {
    /// A file, named by its path in messages.
    pub fn path(path: impl AsRef<Path>) -> Input {
        let path = path.as_ref();
        Input {
            name: path.display().to_string().into(),
            kind: InputKind::Path(path.to_owned()),
        }
    }

    /// Bytes in memory, named `name` in messages.
    pub fn bytes(name: &str, data: impl Into<Arc<[u8]>>) -> Input {
        Input {
            name: name.into(),
            kind: InputKind::Bytes(data.into()),
        }
    }

    /// Any reader, named `name` in messages. With `len` (its total size in
    /// bytes, if known), the number of pieces is known before parsing.
    pub fn reader(name: &str, reader: impl Read + Send + 'static, len: Option<u64>) -> Input {
        Input {
            name: name.into(),
            kind: InputKind::Reader {
                reader: Box::new(reader),
                len,
            },
        }
    }

    /// An input of `len` bytes that `open` opens at any offset, named
    /// `name` in messages. It is opened twice: at 0 to read its header,
    /// then at the first body byte when the reader gets to it.
    pub fn reopenable(
        name: &str,
        len: u64,
        open: impl Fn(u64) -> io::Result<Box<dyn Read + Send>> + Send + Sync + 'static,
    ) -> Input {
        Input {
            name: name.into(),
            kind: InputKind::Reopenable {
                open: Box::new(open),
                len,
            },
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the input and reads its header (CSV), or its byte-order mark
    /// (newline-delimited JSON).
    pub(crate) fn open(
        self,
        format: InputFormat,
        delimiter: u8,
        quote: u8,
    ) -> Result<Opened, Error> {
        let name = self.name;
        let (reader, len, reopen): (Box<dyn Read + Send>, Option<u64>, Option<OpenAt>) =
            match self.kind {
                InputKind::Path(p) => {
                    let f = File::open(&p).map_err(|e| Error::io(&name, e))?;
                    let len = f.metadata().map_err(|e| Error::io(&name, e))?.len();
                    (Box::new(f), Some(len), None)
                }
                InputKind::Bytes(b) => {
                    let len = b.len() as u64;
                    (Box::new(io::Cursor::new(b)), Some(len), None)
                }
                InputKind::Reader { reader, len } => (reader, len, None),
                InputKind::Reopenable { open, len } => {
                    let r = open(0).map_err(|e| Error::io(&name, e))?;
                    (r, Some(len), Some(open))
                }
            };
        let mut opened = match format {
            InputFormat::Csv => Opened::read_header(name, reader, len, delimiter, quote)?,
            InputFormat::Ndjson => Opened::skip_bom(name, reader, len)?,
        };
        if let Some(open) = reopen {
            // Let go of the stream until the body's turn comes.
            opened.reader = Body::Later(open);
            opened.pending = Vec::new();
        }
        Ok(opened)
    }
}

/// Where an opened input's body comes from.
enum Body {
    /// This reader, after [`Opened::pending`].
    Now(Box<dyn Read + Send>),
    /// Opened at the first body byte when cutting starts.
    Later(OpenAt),
}

/// An input whose header has been read.
pub(crate) struct Opened {
    pub(crate) name: Arc<str>,
    pub(crate) header: Vec<Arc<str>>,
    /// Offset of the first body byte in the input.
    pub(crate) body_start: u64,
    /// Line of the first body byte.
    pub(crate) first_line: u64,
    /// Body bytes, when the input's size is known.
    pub(crate) body_len: Option<u64>,
    reader: Body,
    /// Body bytes already read.
    pending: Vec<u8>,
}

/// Appends up to `want` bytes from `r`; returns how many came (0 at end).
fn fill(r: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    buf.reserve(want);
    r.take(want as u64).read_to_end(buf)
}

impl Opened {
    fn read_header(
        name: Arc<str>,
        mut reader: Box<dyn Read + Send>,
        len: Option<u64>,
        delimiter: u8,
        quote: u8,
    ) -> Result<Opened, Error> {
        let mut buf = Vec::new();
        let mut eof = false;
        while buf.len() < 3 && !eof {
            eof = fill(&mut *reader, &mut buf, READ_STEP).map_err(|e| Error::io(&name, e))? == 0;
        }
        let bom = if buf.starts_with(b"\xef\xbb\xbf") {
            3
        } else {
            0
        };

        let mut builder = ReaderBuilder::new();
        builder.delimiter(delimiter).quote(quote);
        let mut csv = primed_reader(&builder);
        let mut out = vec![0u8; 4096];
        let mut ends = vec![0usize; 64];
        let (mut pos, mut nout, mut nend) = (bom, 0, 0);
        loop {
            let input = if pos == buf.len() && eof {
                &[][..]
            } else {
                &buf[pos..]
            };
            let (res, nin, o, e) = csv.read_record(input, &mut out[nout..], &mut ends[nend..]);
            pos += nin;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::Record => break,
                ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                ReadRecordResult::InputEmpty => {
                    if !eof {
                        let want = READ_STEP.max(buf.len());
                        eof = fill(&mut *reader, &mut buf, want)
                            .map_err(|e| Error::io(&name, e))?
                            == 0;
                    }
                }
                ReadRecordResult::End => {
                    return Err(ErrorKind::NoHeader {
                        input: name.to_string(),
                    }
                    .into());
                }
            }
        }
        // A `\r\n` header terminator: take the `\n` too.
        if pos > 0 && buf[pos - 1] == b'\r' {
            if pos == buf.len() && !eof {
                fill(&mut *reader, &mut buf, READ_STEP).map_err(|e| Error::io(&name, e))?;
            }
            if buf.get(pos) == Some(&b'\n') {
                pos += 1;
            }
        }

        let mut header: Vec<Arc<str>> = Vec::with_capacity(nend);
        let mut prev = 0;
        for (i, &end) in ends[..nend].iter().enumerate() {
            let col =
                std::str::from_utf8(&out[prev..end]).map_err(|_| ErrorKind::HeaderNotUtf8 {
                    input: name.to_string(),
                    column: i + 1,
                })?;
            prev = end;
            header.push(col.into());
        }
        let first_line = 1 + count_newlines(&buf[..pos]);
        let body_start = pos as u64;
        let pending = buf.split_off(pos);
        Ok(Opened {
            name,
            header,
            body_start,
            first_line,
            body_len: len.map(|l| l.saturating_sub(body_start)),
            reader: Body::Now(reader),
            pending,
        })
    }

    /// Newline-delimited JSON: no header; a byte-order mark at the start
    /// is skipped.
    fn skip_bom(
        name: Arc<str>,
        mut reader: Box<dyn Read + Send>,
        len: Option<u64>,
    ) -> Result<Opened, Error> {
        let mut buf = Vec::new();
        while buf.len() < 3 {
            let want = 3 - buf.len();
            if fill(&mut *reader, &mut buf, want).map_err(|e| Error::io(&name, e))? == 0 {
                break;
            }
        }
        let body_start = if buf.starts_with(b"\xef\xbb\xbf") {
            3
        } else {
            0
        };
        let pending = buf.split_off(body_start);
        Ok(Opened {
            name,
            header: Vec::new(),
            body_start: body_start as u64,
            first_line: 1,
            body_len: len.map(|l| l.saturating_sub(body_start as u64)),
            reader: Body::Now(reader),
            pending,
        })
    }

    /// The number of pieces of size `piece_size`, when the size is known.
    pub(crate) fn pieces(&self, piece_size: u64) -> Option<u64> {
        self.body_len.map(|l| l.div_ceil(piece_size))
    }
}

/// A cut piece of one input.
pub(crate) struct Piece {
    /// Index of the piece among all pieces of the run.
    pub(crate) index: u64,
    /// Index of its input.
    pub(crate) input: usize,
    /// Offset of its first byte in the input.
    pub(crate) byte_start: u64,
    pub(crate) data: Vec<u8>,
    /// The last piece of its input (it may lack a final terminator).
    pub(crate) last: bool,
    /// The input ends inside a quoted field opened in the record that starts
    /// at this offset of `data`.
    pub(crate) unterminated: Option<usize>,
}

/// What the piece reader reports besides pieces.
pub(crate) enum ReadEvent {
    /// Pieces `index..index + count` hold no record start (a record longer
    /// than the piece size covers them): complete, no rows.
    Empty { index: u64, count: u64 },
    /// Reading failed at `byte`; pieces `index..index + count` are lost.
    Failed {
        index: u64,
        count: u64,
        byte: u64,
        error: io::Error,
    },
}

/// Where [`cut_pieces`] sends what it cuts.
pub(crate) trait PieceSink {
    /// An empty buffer for the next piece (a recycled one, ideally).
    fn buffer(&mut self) -> Vec<u8>;
    /// A cut piece; `false` ends the cutting (nobody is listening).
    fn piece(&mut self, piece: Piece) -> bool;
    /// An empty or lost piece.
    fn event(&mut self, event: ReadEvent);
    /// Polled between pieces: `true` ends the cutting early.
    fn stopped(&self) -> bool;
}

/// Cuts one opened input into pieces, in order, into `sink`. Returns how
/// many piece indexes it used, starting at `base`.
pub(crate) fn cut_pieces(
    mut opened: Opened,
    input: usize,
    base: u64,
    piece_size: u64,
    splitter: &mut Splitter,
    sink: &mut dyn PieceSink,
) -> u64 {
    let known = opened.pieces(piece_size);
    let mut k: u64 = 0;
    let mut start: u64 = 0;
    let mut reader = match std::mem::replace(&mut opened.reader, Body::Now(Box::new(io::empty()))) {
        Body::Now(r) => r,
        Body::Later(open) => match open(opened.body_start) {
            Ok(r) => r,
            Err(error) => {
                let lost = known.map_or(1, |n| n.max(1));
                sink.event(ReadEvent::Failed {
                    index: base,
                    count: lost,
                    byte: opened.body_start,
                    error,
                });
                return lost;
            }
        },
    };
    let mut buf = sink.buffer();
    buf.append(&mut opened.pending);
    let mut eof = false;
    splitter.reset();
    loop {
        if sink.stopped() {
            return known.unwrap_or(k).max(k);
        }
        let target_abs = (k + 1).saturating_mul(piece_size);
        if start >= target_abs {
            // Every cell before the one holding `start` is empty.
            let cell = start / piece_size;
            sink.event(ReadEvent::Empty {
                index: base + k,
                count: cell - k,
            });
            k = cell;
            continue;
        }
        let target = usize::try_from(target_abs - start).unwrap_or(usize::MAX);
        match splitter.split(&buf, target, eof) {
            SplitResult::NeedMore => {
                let want = target.saturating_sub(buf.len()).clamp(READ_STEP, 64 << 20);
                match fill(&mut *reader, &mut buf, want) {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(error) => {
                        let lost = known.map_or(1, |n| n.saturating_sub(k).max(1));
                        sink.event(ReadEvent::Failed {
                            index: base + k,
                            count: lost,
                            byte: opened.body_start + start + buf.len() as u64,
                            error,
                        });
                        return k + lost;
                    }
                }
            }
            SplitResult::Piece(n) => {
                let mut next = sink.buffer();
                next.extend_from_slice(&buf[n..]);
                buf.truncate(n);
                let p = Piece {
                    index: base + k,
                    input,
                    byte_start: opened.body_start + start,
                    data: std::mem::replace(&mut buf, next),
                    last: false,
                    unterminated: None,
                };
                if !sink.piece(p) {
                    return k + 1;
                }
                start += n as u64;
                k += 1;
                splitter.reset();
            }
            SplitResult::End { unterminated } => {
                if !buf.is_empty() {
                    let p = Piece {
                        index: base + k,
                        input,
                        byte_start: opened.body_start + start,
                        data: buf,
                        last: true,
                        unterminated,
                    };
                    k += 1;
                    if !sink.piece(p) {
                        return k;
                    }
                }
                // Cells after the last record start hold no record.
                let total = known.unwrap_or(k).max(k);
                if total > k {
                    sink.event(ReadEvent::Empty {
                        index: base + k,
                        count: total - k,
                    });
                }
                return total;
            }
        }
    }
}
