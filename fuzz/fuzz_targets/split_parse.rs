//! Arbitrary bytes, piece size and read step: split + piecewise parse
//! equals one sequential `csv-core` pass, and an unterminated final quote is
//! reported at the start of its record.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

use common::{ends_quoted, piecewise, sequential};

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let size = 1 + usize::from(input[0]) * 7;
    let step = 1 + usize::from(input[1]);
    let data = &input[3..];

    // Pieces equal one pass.
    let mut want = sequential(data);
    let (got, unterminated) = piecewise(data, size, step);
    if ends_quoted(data) {
        let last = want.pop().expect("a record holds the open quote");
        assert_eq!(unterminated, Some(last.0), "unterminated record start");
    } else {
        assert_eq!(unterminated, None);
    }
    assert_eq!(got, want);
});
