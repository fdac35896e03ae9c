//! The surviving records, written as CSV or as newline-delimited JSON, in
//! the input order of the rows that were kept (so outputs can be diffed).

use std::io::{self, Write};
use std::path::Path;

use csv_core::{WriteResult, Writer};

use super::mapping::Mapping;
use super::pipeline::Records;

/// An output format.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Format {
    /// A header of target names, then one row per record.
    Csv,
    /// One JSON object per line; dotted targets become nested objects.
    Ndjson,
}

impl Format {
    /// The format a file name asks for: `.csv`, or `.ndjson` / `.jsonl` /
    /// `.json`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

/// Writes every record of `records` to `out` in input order.
///
/// # Errors
///
/// When writing fails.
pub fn write_records<W: Write>(records: &Records, format: Format, out: W) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    match format {
        Format::Csv => {
            let mut csv = CsvOut::new(&mut out);
            for f in records.mapping().fields() {
                csv.field(f.target.as_bytes())?;
            }
            csv.end_record()?;
            for r in records.in_input_order() {
                for v in r.values() {
                    csv.field(v.as_bytes())?;
                }
                csv.end_record()?;
            }
        }
        Format::Ndjson => {
            let shape = JsonShape::new(records.mapping());
            let mut values = Vec::new();
            let mut line = Vec::new();
            for r in records.in_input_order() {
                values.clear();
                values.extend(r.values());
                line.clear();
                shape.write(&mut line, &values);
                line.push(b'\n');
                out.write_all(&line)?;
            }
        }
    }
    out.flush()
}

/// CSV through `csv-core`'s writer, so that quoting matches the reader.
struct CsvOut<W: Write> {
    out: W,
    csv: Writer,
    buf: [u8; 4096],
    first: bool,
}

impl<W: Write> CsvOut<W> {
    fn new(out: W) -> CsvOut<W> {
        CsvOut {
            out,
            csv: Writer::new(),
            buf: [0; 4096],
            first: true,
        }
    }

    fn field(&mut self, mut input: &[u8]) -> io::Result<()> {
        if !self.first {
            let (_, n) = self.csv.delimiter(&mut self.buf);
            self.out.write_all(&self.buf[..n])?;
        }
        self.first = false;
        loop {
            let (res, nin, nout) = self.csv.field(input, &mut self.buf);
            input = &input[nin..];
            self.out.write_all(&self.buf[..nout])?;
            if res == WriteResult::InputEmpty {
                return Ok(());
            }
        }
    }

    fn end_record(&mut self) -> io::Result<()> {
        loop {
            let (res, n) = self.csv.terminator(&mut self.buf);
            self.out.write_all(&self.buf[..n])?;
            if res == WriteResult::InputEmpty {
                break;
            }
        }
        self.first = true;
        Ok(())
    }
}

/// How a mapping's records look as JSON objects: dotted targets become
/// nested objects (`Address.City` → `{"Address":{"City":…}}`).
#[derive(Debug)]
pub struct JsonShape {
    children: Vec<(Vec<u8>, Node)>,
}

#[derive(Debug)]
enum Node {
    Leaf(usize),
    Inner(JsonShape),
}

impl JsonShape {
    /// The shape of `mapping`'s targets.
    pub fn new(mapping: &Mapping) -> JsonShape {
        let mut root = JsonShape {
            children: Vec::new(),
        };
        for (i, f) in mapping.fields().iter().enumerate() {
            let segments: Vec<&str> = f.target.split('.').collect();
            root.insert(&segments, i);
        }
        root
    }

    /// Mapping checks guarantee that no target is a prefix of another.
    fn insert(&mut self, path: &[&str], field: usize) {
        let (head, tail) = (path[0], &path[1..]);
        // `"name":`, escaped once here rather than for every record.
        let mut name = serde_json::to_vec(head).unwrap_or_default();
        name.push(b':');
        if tail.is_empty() {
            self.children.push((name, Node::Leaf(field)));
            return;
        }
        let existing = self
            .children
            .iter_mut()
            .find(|(n, node)| *n == name && matches!(node, Node::Inner(_)));
        match existing {
            Some((_, Node::Inner(t))) => t.insert(tail, field),
            _ => {
                let mut t = JsonShape {
                    children: Vec::new(),
                };
                t.insert(tail, field);
                self.children.push((name, Node::Inner(t)));
            }
        }
    }

    /// Appends one record, its values in mapping order, as a JSON object.
    pub fn write(&self, out: &mut Vec<u8>, values: &[&str]) {
        out.push(b'{');
        for (i, (name, node)) in self.children.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name);
            match node {
                Node::Leaf(f) => write_json_str(out, values[*f]),
                Node::Inner(t) => t.write(out, values),
            }
        }
        out.push(b'}');
    }
}

/// Whether `s` (UTF-8) is its own JSON string body: nothing in it to
/// escape.
pub fn is_plain_json(s: &[u8]) -> bool {
    s.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Appends `s` as a JSON string.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    write_json_bytes(out, s.as_bytes());
}

/// Appends UTF-8 bytes as a JSON string, for a caller that checks the
/// UTF-8 of all it wrote at once: bytes that are not UTF-8 are copied as
/// they are, or as U+FFFD in a string that needs escaping.
pub fn write_json_bytes(out: &mut Vec<u8>, s: &[u8]) {
    if is_plain_json(s) {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(s));
    }
}
