/*!
Record boundaries: where a piece of CSV (quote-aware) or of newline-delimited
JSON may end.

# Design

A piece must end exactly where a record ends, so that every piece can be
parsed on its own and the records of all pieces, in order, are the records
of one sequential pass. A newline ends a record only outside a quoted field,
and whether a byte is inside a quoted field depends on everything before it.
[`Splitter`] therefore scans every piece from its start, but it only stops
where the answer can change:

* Outside a quoted field, before the target size, it jumps from quote to
  quote with `memchr`. Newlines there do not matter: we do not cut yet.
* Outside a quoted field, past the target, it jumps with `memchr2` to the
  next newline or quote; the first newline outside quotes is the cut.
* Inside a quoted field it jumps with `memchr` to the next quote. A quote
  followed by a quote is an escaped quote (`""`); any other quote closes
  the field.

A quote opens a quoted field only at the start of a field, exactly as in
`csv-core`'s state machine: at the start of the input or right after a
delimiter, `\n` or `\r`. A quote anywhere else (`ab"c`) is data, and so is
everything after a closing quote up to the next delimiter (`"ab"c` is the
field `abc`). This makes the scan exact for every input, well formed or not,
rather than a quote-parity guess. Backslash escapes are not supported; the
parser does not support them either.

Newline-delimited JSON needs no state: a JSON text cannot hold a raw
newline (inside strings it must be escaped), so every `\n` ends a record.
[`Splitter::lines`] cuts at the first newline past the target.

# Advice for hackers

* The scanner is resumable: [`Splitter::split`] keeps how far it has looked
  and in which state, so feeding it a buffer that has grown costs only the
  new bytes. Call [`Splitter::reset`] after cutting a piece.
* The one case that needs one byte of lookahead is a quote at the very end
  of the buffer inside a quoted field (`""` or a closing quote?). The
  scanner then asks for more input rather than guess.
* Tests compare pieces cut at every size with one sequential `csv-core`
  pass; so does the fuzz target in `fuzz/`.
*/

use memchr::{memchr, memchr2, memrchr2};

/// What a [`Splitter`] found in the bytes it was given.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SplitResult {
    /// No record boundary at or after the target was found in the buffer:
    /// append more input and call again.
    NeedMore,
    /// The piece ends after this many bytes of the buffer, right after a
    /// record terminator. The bytes that follow start a new record.
    Piece(usize),
    /// The input ended (the caller said so) before a boundary past the
    /// target: the whole buffer is the last piece.
    End {
        /// When the input ended inside a quoted field that never closed:
        /// the offset, in the buffer, of the start of the record that
        /// contains the opening quote. Bytes before it are whole records.
        unterminated: Option<usize>,
    },
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    /// Not inside a quoted field.
    Outside,
    /// Inside a quoted field that opened at the given offset.
    Quoted { open: usize },
}

/// A resumable, allocation-free finder of record boundaries.
///
/// # Example
///
/// ```
/// use sluice::ingest::split::{SplitResult, Splitter};
///
/// let data = b"a,\"x\ny\"\nb,c\nd,e\n";
/// let mut s = Splitter::new();
/// // Ask for a piece of at least 3 bytes: the newline at offset 4 is inside
/// // quotes, so the first boundary past the target is after offset 7.
/// assert_eq!(s.split(data, 3, false), SplitResult::Piece(8));
/// ```
#[derive(Clone, Debug)]
pub struct Splitter {
    /// Cut at any newline (newline-delimited JSON), not only outside quotes.
    lines: bool,
    delimiter: u8,
    quote: u8,
    state: State,
    /// Offset up to which the buffer has been scanned.
    pos: usize,
    /// Offset where the current run of bytes outside quotes began.
    outside_since: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Splitter {
    /// A splitter for comma-delimited, `"`-quoted CSV.
    pub fn new() -> Splitter {
        Splitter::with_dialect(b',', b'"')
    }

    /// A splitter for the given delimiter and quote bytes.
    pub fn with_dialect(delimiter: u8, quote: u8) -> Splitter {
        Splitter {
            lines: false,
            delimiter,
            quote,
            state: State::Outside,
            pos: 0,
            outside_since: 0,
        }
    }

    /// A splitter for newline-delimited JSON: every `\n` ends a record.
    ///
    /// # Example
    ///
    /// ```
    /// use sluice::ingest::split::{SplitResult, Splitter};
    ///
    /// let data = b"{\"a\":\"x,\\\"y\"}\n{}\n";
    /// let mut s = Splitter::lines();
    /// assert_eq!(s.split(data, 1, false), SplitResult::Piece(14));
    /// ```
    pub fn lines() -> Splitter {
        Splitter {
            lines: true,
            ..Splitter::new()
        }
    }

    /// Forgets the current piece: the next call to [`Splitter::split`] gets
    /// a buffer that starts at a record boundary.
    pub fn reset(&mut self) {
        self.state = State::Outside;
        self.pos = 0;
        self.outside_since = 0;
    }

    /// Looks for the first record boundary at or after `target` bytes.
    ///
    /// `buf` holds the current piece from its first byte; every call after
    /// a [`SplitResult::NeedMore`] must pass the same bytes followed by
    /// more. `eof` says that no more bytes will follow.
    ///
    /// # Termination
    ///
    /// Each call scans only the bytes added since the previous call (plus at
    /// most one byte it had to look ahead for), so feeding a piece in many
    /// small reads is linear in its size.
    pub fn split(&mut self, buf: &[u8], target: usize, eof: bool) -> SplitResult {
        debug_assert!(self.pos <= buf.len(), "buffer shrank between calls");
        if self.lines {
            return self.split_lines(buf, target, eof);
        }
        loop {
            match self.state {
                State::Quoted { open } => match memchr(self.quote, &buf[self.pos..]) {
                    None => {
                        self.pos = buf.len();
                        if eof {
                            return SplitResult::End {
                                unterminated: Some(self.record_start_before(buf, open)),
                            };
                        }
                        return SplitResult::NeedMore;
                    }
                    Some(i) => {
                        let q = self.pos + i;
                        match buf.get(q + 1) {
                            // `""` inside quotes is one escaped quote.
                            Some(&b) if b == self.quote => self.pos = q + 2,
                            // Any other byte closes the quoted field.
                            Some(_) => {
                                self.pos = q + 1;
                                self.state = State::Outside;
                                self.outside_since = q + 1;
                            }
                            None if eof => {
                                self.pos = q + 1;
                                self.state = State::Outside;
                                self.outside_since = q + 1;
                            }
                            None => {
                                // Decide when the next byte is known.
                                self.pos = q;
                                return SplitResult::NeedMore;
                            }
                        }
                    }
                },
                State::Outside if self.pos < target => {
                    let end = target.min(buf.len());
                    match memchr(self.quote, &buf[self.pos..end]) {
                        Some(i) => self.on_quote_outside(buf, self.pos + i),
                        None if end == buf.len() && !eof => {
                            self.pos = end;
                            return SplitResult::NeedMore;
                        }
                        None if end == buf.len() => {
                            self.pos = end;
                            return SplitResult::End { unterminated: None };
                        }
                        None => self.pos = end,
                    }
                }
                State::Outside => match memchr2(b'\n', self.quote, &buf[self.pos..]) {
                    Some(i) if buf[self.pos + i] == b'\n' => {
                        let cut = self.pos + i + 1;
                        self.pos = cut;
                        return SplitResult::Piece(cut);
                    }
                    Some(i) => self.on_quote_outside(buf, self.pos + i),
                    None => {
                        self.pos = buf.len();
                        if eof {
                            return SplitResult::End { unterminated: None };
                        }
                        return SplitResult::NeedMore;
                    }
                },
            }
        }
    }

    /// The first `\n` at or after `target` ends the piece.
    fn split_lines(&mut self, buf: &[u8], target: usize, eof: bool) -> SplitResult {
        let from = self.pos.max(target);
        if from < buf.len()
            && let Some(i) = memchr(b'\n', &buf[from..])
        {
            let cut = from + i + 1;
            self.pos = cut;
            return SplitResult::Piece(cut);
        }
        self.pos = buf.len();
        if eof {
            SplitResult::End { unterminated: None }
        } else {
            SplitResult::NeedMore
        }
    }

    /// A quote outside a quoted field opens one only at a field start.
    #[inline]
    fn on_quote_outside(&mut self, buf: &[u8], q: usize) {
        let at_field_start = q == 0 || {
            let prev = buf[q - 1];
            prev == self.delimiter || prev == b'\n' || prev == b'\r'
        };
        if at_field_start {
            self.state = State::Quoted { open: q };
        }
        self.pos = q + 1;
    }

    /// The start of the record that contains the opening quote at `open`:
    /// just after the last terminator outside quotes before it.
    fn record_start_before(&self, buf: &[u8], open: usize) -> usize {
        // Between `outside_since` and `open` there is no quote, so every
        // terminator there is a real one.
        match memrchr2(b'\n', b'\r', &buf[self.outside_since..open]) {
            Some(i) => self.outside_since + i + 1,
            None => self.record_start_fallback(buf, open),
        }
    }

    /// No terminator since the last quoted field closed: the record started
    /// earlier. Rescan from the start of the piece, sequentially; this only
    /// runs once, at the end of input, for a malformed file.
    fn record_start_fallback(&self, buf: &[u8], open: usize) -> usize {
        let mut rescan = Splitter::with_dialect(self.delimiter, self.quote);
        let mut record_start = 0;
        let mut i = 0;
        while i < open {
            let b = buf[i];
            match rescan.state {
                State::Outside => {
                    if b == b'\n' || b == b'\r' {
                        record_start = i + 1;
                    } else if b == self.quote {
                        rescan.on_quote_outside(buf, i);
                    }
                    i += 1;
                }
                State::Quoted { .. } => {
                    if b == self.quote {
                        if buf.get(i + 1) == Some(&self.quote) {
                            i += 2;
                            continue;
                        }
                        rescan.state = State::Outside;
                    }
                    i += 1;
                }
            }
        }
        record_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cuts `data` into pieces of at least `size` bytes, feeding the splitter
    /// `step` bytes at a time, as a reader would.
    fn cut(data: &[u8], size: usize, step: usize) -> (Vec<&[u8]>, Option<usize>) {
        let mut s = Splitter::new();
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut have = 0;
        loop {
            let eof = start + have >= data.len();
            match s.split(&data[start..start + have], size, eof) {
                SplitResult::NeedMore => have = (have + step).min(data.len() - start),
                SplitResult::Piece(n) => {
                    pieces.push(&data[start..start + n]);
                    start += n;
                    have -= n;
                    s.reset();
                }
                SplitResult::End { unterminated } => {
                    if have > 0 {
                        pieces.push(&data[start..start + have]);
                    }
                    return (pieces, unterminated);
                }
            }
        }
    }

    #[test]
    fn pieces_concatenate_to_the_input() {
        let data = b"a,b\n\"x\ny\",z\n\"q\"\"\n\",w\nlast,row";
        for size in 1..data.len() + 2 {
            for step in [1, 2, 3, 7, 64] {
                let (pieces, unterminated) = cut(data, size, step);
                assert_eq!(pieces.concat(), data.to_vec(), "size {size} step {step}");
                assert_eq!(unterminated, None);
                for p in &pieces[..pieces.len() - 1] {
                    assert!(p.len() >= size, "a piece shorter than the target");
                    assert_eq!(p.last(), Some(&b'\n'));
                }
            }
        }
    }

    #[test]
    fn newlines_inside_quotes_never_cut() {
        let data = b"\"1\n2\n3\",\"\"\"\n\"\"\"\nok\n";
        let (pieces, _) = cut(data, 1, 1);
        assert_eq!(pieces, vec![&b"\"1\n2\n3\",\"\"\"\n\"\"\"\n"[..], b"ok\n"]);
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_data() {
        // csv-core reads `ab"c` as a plain field: the newline after it ends
        // the record.
        let data = b"ab\"c,d\ne,f\n";
        let (pieces, unterminated) = cut(data, 1, 1);
        assert_eq!(pieces, vec![&b"ab\"c,d\n"[..], b"e,f\n"]);
        assert_eq!(unterminated, None);
    }

    #[test]
    fn unterminated_quote_points_at_its_record() {
        let data = b"a,b\nc,\"open\nnever\nclosed";
        let (pieces, unterminated) = cut(data, 1, 5);
        assert_eq!(pieces, vec![&b"a,b\n"[..], b"c,\"open\nnever\nclosed"]);
        assert_eq!(unterminated, Some(0));
        // With one big piece the offset is within it.
        let (pieces, unterminated) = cut(data, 1000, 4);
        assert_eq!(pieces.len(), 1);
        assert_eq!(unterminated, Some(4));
        // A closed quoted field earlier in the same record is skipped.
        let data = b"x\n\"q\"\"\",y,\"never";
        let (_, unterminated) = cut(data, 1000, 3);
        assert_eq!(unterminated, Some(2));
    }

    #[test]
    fn crlf_and_bare_cr_start_fields() {
        let data = b"a\r\n\"b\nc\"\r\nd\r\"e\nf\"\n";
        let (pieces, unterminated) = cut(data, 1, 1);
        assert_eq!(unterminated, None);
        assert_eq!(
            pieces,
            vec![&b"a\r\n"[..], b"\"b\nc\"\r\n", b"d\r\"e\nf\"\n"]
        );
    }
}
