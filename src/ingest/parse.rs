/*!
Records out of a piece: a SIMD fast path for plain records and `csv-core`
for everything else.

# Design

Most records of real files have no quotes: their fields are the bytes
between delimiters. [`PieceParser`] finds delimiters, newlines, quotes and
(for files with `\r`) carriage returns 64 bytes at a time, with one vector
compare per byte class and a bit mask per class, and cuts plain records into
field ranges that point into the piece itself: no copy, no allocation.

A record is handed to `csv-core` instead when it contains a quote or a bare
`\r` (a `\r` not followed by `\n` ends a record in `csv-core`'s default
dialect). `csv-core` unescapes its fields into a scratch buffer that is
reused for the whole piece. Both paths produce the same records as one
`csv-core` pass over the whole input: blank lines are skipped, `\r\n` and
`\n` end records, a final record without a newline counts.

# Advice for hackers

* Every change here must keep `tests/differential.rs` and the `split_parse`
  fuzz target green: they compare against plain `csv-core`.
* The `csv-core` reader strips a UTF-8 BOM on its first call. A BOM inside a
  file is data, so the reader is primed with a blank line before use (see
  [`primed_reader`]); a BOM at the start of a file is removed once, by the
  caller, before the header.
*/

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};
use memchr::memchr;
use wide::u8x16;

/// The fields of one record.
///
/// Field `i` is `bytes[ranges[i].0..ranges[i].1]`. The bytes are either the
/// piece itself (plain records) or a scratch buffer holding unescaped fields.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    /// `bytes` as text, when the caller proved it valid UTF-8.
    text: Option<&'a str>,
    ranges: &'a [(usize, usize)],
}

impl<'a> Fields<'a> {
    /// The number of fields.
    #[inline]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the record has no fields (never true for a parsed record).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Field `i`, or `None` past the last field.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.ranges.get(i).map(|&(s, e)| &self.bytes[s..e])
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.ranges.iter().map(|&(s, e)| &self.bytes[s..e])
    }

    /// Whether every field is already known to be valid UTF-8.
    #[inline]
    pub fn is_text(&self) -> bool {
        self.text.is_some()
    }

    /// Field `i` as text, or `None` past the last field or when it is not
    /// valid UTF-8.
    #[inline]
    pub fn str(&self, i: usize) -> Option<&'a str> {
        let &(s, e) = self.ranges.get(i)?;
        match self.text {
            // Fields end at ASCII delimiters, so these are char boundaries.
            Some(t) => t.get(s..e),
            None => std::str::from_utf8(&self.bytes[s..e]).ok(),
        }
    }
}

/// One record and where it starts, relative to the start of its piece.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The record's fields.
    pub fields: Fields<'a>,
    /// Byte offset of the record's first byte within the piece.
    pub byte: usize,
    /// Number of `\n` in the piece before the record's first byte.
    pub line: u64,
}

/// A `csv-core` reader whose BOM stripping has been spent on a blank line,
/// so that a BOM at the start of a piece is kept as data.
pub fn primed_reader(builder: &ReaderBuilder) -> Reader {
    let mut reader = builder.build();
    let (mut out, mut ends) = ([0u8; 1], [0usize; 1]);
    // A lone terminator at the start of a record is discarded: the state
    // stays "start of record" and only the first-call flag changes.
    let _ = reader.read_record(b"\n", &mut out, &mut ends);
    reader
}

/// A plain quoted field found by the fast path.
struct Quoted {
    /// Offset of the closing quote.
    close: usize,
    /// Offset where scanning resumes: the next field or record.
    next: usize,
    /// The field ends its record.
    ends_record: bool,
    /// `\n` inside the quotes, and the one that ends the record if any.
    newlines: u64,
}

/// Parses pieces into records, reusing its buffers from piece to piece.
#[derive(Debug)]
pub struct PieceParser {
    builder: ReaderBuilder,
    delimiter: u8,
    quote: u8,
    reader: Reader,
    ranges: Vec<(usize, usize)>,
    scratch: Vec<u8>,
    ends: Vec<usize>,
}

impl PieceParser {
    /// A parser for the given delimiter and quote.
    pub fn new(delimiter: u8, quote: u8) -> PieceParser {
        let mut builder = ReaderBuilder::new();
        builder.delimiter(delimiter).quote(quote);
        let reader = primed_reader(&builder);
        PieceParser {
            builder,
            delimiter,
            quote,
            reader,
            ranges: Vec::with_capacity(64),
            scratch: vec![0; 4096],
            ends: vec![0; 64],
        }
    }

    /// Calls `f` with every record of `piece`, in order, and returns the
    /// number of `\n` in `piece`.
    ///
    /// `piece` must start at a record boundary. Unless `last` is true it must
    /// also end at one (as the pieces of a
    /// [`Splitter`](super::split::Splitter) do); when `last` is true a final
    /// record without a terminator is a record too. `text` is `piece` as a
    /// `str` when the caller has validated it; fields then need no UTF-8
    /// check of their own.
    ///
    /// # Termination
    ///
    /// Linear in the size of the piece; each byte is looked at a bounded
    /// number of times.
    pub fn parse<F: FnMut(Record<'_>)>(
        &mut self,
        piece: &[u8],
        text: Option<&str>,
        last: bool,
        mut f: F,
    ) -> u64 {
        debug_assert!(text.is_none_or(|t| t.as_bytes() == piece));
        if memchr(b'\r', piece).is_some() {
            self.parse_impl::<true, F>(piece, text, last, &mut f)
        } else {
            self.parse_impl::<false, F>(piece, text, last, &mut f)
        }
    }

    fn parse_impl<const CR: bool, F: FnMut(Record<'_>)>(
        &mut self,
        piece: &[u8],
        text: Option<&str>,
        last: bool,
        f: &mut F,
    ) -> u64 {
        let delim = u8x16::splat(self.delimiter);
        let newline = u8x16::splat(b'\n');
        let quote = u8x16::splat(self.quote);
        let cr = u8x16::splat(b'\r');

        let mut line: u64 = 0;
        // Line of the current record's first byte (quoted fields may hold
        // newlines, so `line` can move within a record).
        let mut record_line: u64 = 0;
        // Start of the current record and of its current field.
        let mut rec = 0usize;
        let mut field = 0usize;
        self.ranges.clear();
        // Start of the next 64-byte block to classify.
        let mut block = 0usize;
        'blocks: while block < piece.len() {
            // Full blocks are read in place; only the last, short one is
            // copied into zeroes (which match nothing).
            let mut padded = [0u8; 64];
            let bytes: &[u8; 64] = match piece.get(block..block + 64) {
                Some(full) => full.try_into().expect("64 bytes"),
                None => {
                    let avail = piece.len() - block;
                    padded[..avail].copy_from_slice(&piece[block..]);
                    &padded
                }
            };
            let (mut dm, mut nm, mut sm) = (0u64, 0u64, 0u64);
            for k in 0..4 {
                let lane: [u8; 16] = bytes[16 * k..16 * k + 16].try_into().expect("16 bytes");
                let v = u8x16::new(lane);
                dm |= (v.simd_eq(delim).to_bitmask() as u64) << (16 * k);
                nm |= (v.simd_eq(newline).to_bitmask() as u64) << (16 * k);
                let mut special = v.simd_eq(quote);
                if CR {
                    special |= v.simd_eq(cr);
                }
                sm |= (special.to_bitmask() as u64) << (16 * k);
            }
            let mut m = dm | nm | sm;
            while m != 0 {
                let bit = m & m.wrapping_neg();
                m ^= bit;
                let at = block + bit.trailing_zeros() as usize;
                if dm & bit != 0 {
                    self.ranges.push((field, at));
                    field = at + 1;
                } else if nm & bit != 0 {
                    let mut end = at;
                    if CR && end > field && piece[end - 1] == b'\r' {
                        end -= 1;
                    }
                    if self.ranges.is_empty() && end == rec {
                        // A blank line: csv-core skips it.
                    } else {
                        self.ranges.push((field, end));
                        self.emit(piece, text, rec, record_line, f);
                    }
                    line += 1;
                    record_line = line;
                    rec = at + 1;
                    field = rec;
                } else if CR && piece[at] == b'\r' && piece.get(at + 1) == Some(&b'\n') {
                    // The `\r` of a `\r\n`: handled with the `\n`.
                } else if let Some(q) = (piece[at] == self.quote && at == field)
                    .then(|| self.quoted_field::<CR>(piece, at, last))
                    .flatten()
                {
                    // A plain quoted field: its content is a slice of the
                    // piece. Scanning resumes after it.
                    self.ranges.push((at + 1, q.close));
                    line += q.newlines;
                    if q.ends_record {
                        self.emit(piece, text, rec, record_line, f);
                        rec = q.next;
                        record_line = line;
                    }
                    field = q.next;
                    block = q.next;
                    continue 'blocks;
                } else {
                    // A quote anywhere else, a quoted field with `""` or
                    // text after its closing quote, or a bare `\r`: csv-core
                    // takes this record.
                    let next = self.parse_slow(piece, rec, record_line, f);
                    line = record_line + count_newlines(&piece[rec..next]);
                    record_line = line;
                    rec = next;
                    field = next;
                    self.ranges.clear();
                    block = next;
                    continue 'blocks;
                }
            }
            block += 64;
        }
        if rec < piece.len() {
            // The final record has no terminator; `rec..` holds no quote and
            // no bare `\r` (else csv-core would have taken it).
            let mut end = piece.len();
            if CR && end > field && piece[end - 1] == b'\r' {
                end -= 1;
            }
            if !(self.ranges.is_empty() && end == rec) {
                debug_assert!(
                    last,
                    "a piece that is not the last must end with a terminator"
                );
                self.ranges.push((field, end));
                self.emit(piece, text, rec, record_line, f);
            }
        }
        line
    }

    /// Hands the fields gathered in `self.ranges` to `f` as the record of
    /// `piece` that starts at `byte` on `line`, and starts the next one.
    #[inline(always)]
    fn emit<F: FnMut(Record<'_>)>(
        &mut self,
        piece: &[u8],
        text: Option<&str>,
        byte: usize,
        line: u64,
        f: &mut F,
    ) {
        f(Record {
            fields: Fields {
                bytes: piece,
                text,
                ranges: &self.ranges,
            },
            byte,
            line,
        });
        self.ranges.clear();
    }

    /// A quoted field opening at `open`, if it is plain: no `""` inside,
    /// and its closing quote followed by a delimiter, a record terminator
    /// (`\n`, or `\r\n` when `CR`) or the end of the last piece. Anything
    /// else is left to csv-core.
    #[inline]
    fn quoted_field<const CR: bool>(
        &self,
        piece: &[u8],
        open: usize,
        last: bool,
    ) -> Option<Quoted> {
        let close = open + 1 + memchr(self.quote, &piece[open + 1..])?;
        let inside = count_newlines(&piece[open + 1..close]);
        let (next, ends_record, newlines) = match piece.get(close + 1) {
            Some(&b) if b == self.delimiter => (close + 2, false, inside),
            Some(b'\n') => (close + 2, true, inside + 1),
            Some(b'\r') if CR && piece.get(close + 2) == Some(&b'\n') => {
                (close + 3, true, inside + 1)
            }
            None if last => (close + 1, true, inside),
            _ => return None,
        };
        Some(Quoted {
            close,
            next,
            ends_record,
            newlines,
        })
    }

    /// Parses the one record that starts at `start` with csv-core, calls `f`
    /// with it and returns the offset just after it.
    #[cold]
    fn parse_slow<F: FnMut(Record<'_>)>(
        &mut self,
        piece: &[u8],
        start: usize,
        line: u64,
        f: &mut F,
    ) -> usize {
        let mut pos = start;
        let (mut nout, mut nend) = (0usize, 0usize);
        let mut eof = false;
        loop {
            let input = if eof { &[][..] } else { &piece[pos..] };
            let (res, nin, o, e) =
                self.reader
                    .read_record(input, &mut self.scratch[nout..], &mut self.ends[nend..]);
            pos += nin;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::Record => break,
                ReadRecordResult::OutputFull => {
                    let n = self.scratch.len() * 2;
                    self.scratch.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                // The input ran dry: after blank lines only, or inside the
                // last record of the last piece (other pieces end on a
                // terminator). Flush, as csv-core does at end of input: that
                // yields the record, or nothing after blank lines.
                ReadRecordResult::InputEmpty => eof = true,
                // Nothing but blank lines up to the end of the input.
                ReadRecordResult::End => {
                    self.reader = primed_reader(&self.builder);
                    return pos;
                }
            }
        }
        if eof {
            // After end of input the reader stays in its final state.
            self.reader = primed_reader(&self.builder);
        }
        self.ranges.clear();
        let mut prev = 0;
        for &end in &self.ends[..nend] {
            self.ranges.push((prev, end));
            prev = end;
        }
        // csv-core skips blank lines itself, so the record starts at the
        // first byte that is not a terminator.
        let skipped = piece[start..pos]
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        let skipped_lines = count_newlines(&piece[start..start + skipped]);
        // One check for all the record's fields.
        let bytes = &self.scratch[..nout];
        f(Record {
            fields: Fields {
                bytes,
                text: simdutf8::basic::from_utf8(bytes).ok(),
                ranges: &self.ranges,
            },
            byte: start + skipped,
            line: line + skipped_lines,
        });
        pos
    }
}

/// Counts `\n` bytes.
pub fn count_newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// One line of newline-delimited JSON and where it starts, relative to the
/// start of its piece.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// The line without its `\n` or `\r\n`.
    pub bytes: &'a [u8],
    /// Byte offset of its first byte within the piece.
    pub byte: usize,
    /// Number of `\n` in the piece before it.
    pub line: u64,
}

/// Calls `f` with every line of `piece` that is not blank (only ASCII
/// whitespace), in order, and returns the number of `\n` in `piece`. A
/// final line without a terminator is a line too.
///
/// # Termination
///
/// Linear in the size of the piece.
pub fn parse_lines<F: FnMut(Line<'_>)>(piece: &[u8], mut f: F) -> u64 {
    let mut start = 0usize;
    let mut line = 0u64;
    while start < piece.len() {
        let (end, next) = match memchr(b'\n', &piece[start..]) {
            Some(i) => (start + i, start + i + 1),
            None => (piece.len(), piece.len()),
        };
        let mut bytes = &piece[start..end];
        if let Some(b) = bytes.strip_suffix(b"\r") {
            bytes = b;
        }
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            f(Line {
                bytes,
                byte: start,
                line,
            });
        }
        line += u64::from(next > end);
        start = next;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(piece: &[u8], last: bool) -> Vec<(usize, u64, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        PieceParser::new(b',', b'"').parse(piece, None, last, |r| {
            out.push((
                r.byte,
                r.line,
                r.fields.iter().map(|f| f.to_vec()).collect(),
            ));
        });
        out
    }

    fn fields(piece: &[u8]) -> Vec<Vec<String>> {
        records(piece, true)
            .into_iter()
            .map(|(_, _, f)| {
                f.into_iter()
                    .map(|b| String::from_utf8(b).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn plain_and_quoted_records() {
        assert_eq!(
            fields(b"a,b,c\n\"x,1\",\"y\"\"\",z\n\n1,,3"),
            vec![
                vec!["a", "b", "c"],
                vec!["x,1", "y\"", "z"],
                vec!["1", "", "3"]
            ]
        );
    }

    #[test]
    fn crlf_bare_cr_and_blank_lines() {
        assert_eq!(
            fields(b"a,b\r\n\r\nc,d\re,f\r\n\n\"g\r\nh\",i\r"),
            vec![
                vec!["a", "b"],
                vec!["c", "d"],
                vec!["e", "f"],
                vec!["g\r\nh", "i"]
            ]
        );
    }

    #[test]
    fn positions_are_piece_relative() {
        let got = records(b"a\n\n\"b\nc\"\nd\n", false);
        let pos: Vec<(usize, u64)> = got.iter().map(|(b, l, _)| (*b, *l)).collect();
        assert_eq!(pos, vec![(0, 0), (3, 2), (9, 4)]);
    }

    #[test]
    fn bom_inside_a_piece_is_data() {
        assert_eq!(fields(b"\xef\xbb\xbfa,b\n"), vec![vec!["\u{feff}a", "b"]]);
        assert_eq!(
            fields(b"\xef\xbb\xbf\"a\",b\n"),
            vec![vec!["\u{feff}\"a\"", "b"]]
        );
    }

    #[test]
    fn long_records_cross_blocks() {
        let long = "x".repeat(200);
        let text = format!("{long},{long}\n\"{long}\",y\n");
        let got = fields(text.as_bytes());
        assert_eq!(
            got,
            vec![vec![long.clone(), long.clone()], vec![long, "y".into()]]
        );
    }
}
