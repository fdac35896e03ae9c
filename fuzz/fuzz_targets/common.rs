//! The sequential references both targets compare against.
#![allow(dead_code)]

use csv_core::{ReadRecordResult, ReaderBuilder};
use sluice::ingest::parse::PieceParser;
use sluice::ingest::split::{SplitResult, Splitter};

pub type Rec = (usize, Vec<Vec<u8>>);

/// One `csv-core` pass, without BOM stripping.
pub fn sequential(data: &[u8]) -> Vec<Rec> {
    let mut rdr = ReaderBuilder::new().build();
    let _ = rdr.read_record(b"\n", &mut [0u8; 1], &mut [0usize; 1]);
    let (mut out, mut ends) = (vec![0u8; 256], vec![0usize; 8]);
    let (mut pos, mut recs) = (0, Vec::new());
    loop {
        let start = pos;
        let (mut nout, mut nend) = (0, 0);
        loop {
            let (res, nin, o, e) = rdr.read_record(&data[pos..], &mut out[nout..], &mut ends[nend..]);
            pos += nin;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::Record => break,
                ReadRecordResult::End => return recs,
                ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                ReadRecordResult::InputEmpty => {}
            }
        }
        let skipped = data[start..].iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
        let mut prev = 0;
        let fields = ends[..nend]
            .iter()
            .map(|&e| {
                let f = out[prev..e].to_vec();
                prev = e;
                f
            })
            .collect();
        recs.push((start + skipped, fields));
    }
}

/// Whether `data` ends inside a quoted field, one byte at a time.
pub fn ends_quoted(data: &[u8]) -> bool {
    let (mut start, mut quoted, mut after_quote) = (true, false, false);
    for &b in data {
        let term = b == b'\n' || b == b'\r';
        if quoted {
            if b == b'"' {
                quoted = false;
                after_quote = true;
            }
            continue;
        }
        if after_quote {
            after_quote = false;
            if b == b'"' {
                quoted = true;
                continue;
            }
        }
        if start && b == b'"' {
            quoted = true;
            start = false;
        } else {
            start = b == b',' || term;
        }
    }
    quoted
}

pub fn piecewise(data: &[u8], size: usize, step: usize) -> (Vec<Rec>, Option<usize>) {
    let mut splitter = Splitter::new();
    let mut parser = PieceParser::new(b',', b'"');
    let (mut out, mut start, mut have) = (Vec::new(), 0usize, 0usize);
    loop {
        let eof = start + have >= data.len();
        match splitter.split(&data[start..start + have], size, eof) {
            SplitResult::NeedMore => have = (have + step).min(data.len() - start),
            SplitResult::Piece(n) => {
                let piece = &data[start..start + n];
                parser.parse(piece, std::str::from_utf8(piece).ok(), false, |r| {
                    out.push((start + r.byte, r.fields.iter().map(<[u8]>::to_vec).collect()));
                });
                start += n;
                have -= n;
                splitter.reset();
            }
            SplitResult::End { unterminated } => {
                let piece = &data[start..start + unterminated.unwrap_or(have)];
                parser.parse(piece, std::str::from_utf8(piece).ok(), true, |r| {
                    out.push((start + r.byte, r.fields.iter().map(<[u8]>::to_vec).collect()));
                });
                return (out, unterminated.map(|u| start + u));
            }
        }
    }
}

