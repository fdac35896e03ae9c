//! The encrypted-upload reader. Bytes that were not sealed under the key
//! never read as plaintext: arbitrary input is an error. A sealed stream
//! reads back exactly; cut short anywhere, or with any byte changed, it
//! is an error, never plaintext that differs.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use sluice::crypto::{DataKey, Opener, Sealer};

fn open(bytes: &[u8], key: &DataKey) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Opener::new(bytes, key)?.read_to_end(&mut out)?;
    Ok(out)
}

fuzz_target!(|input: &[u8]| {
    let Some((&[seg, cut, flip], plain)) = input.split_first_chunk::<3>() else {
        return;
    };
    let key = DataKey::from_bytes(&[3; 32]).unwrap();
    let e = open(input, &key).expect_err("arbitrary bytes opened");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);

    let mut sealer = Sealer::with_segment(&key, 1 + usize::from(seg));
    let mut sealed = Vec::new();
    // Pushed in two calls, split by the knob, which must not matter.
    let at = usize::from(cut).min(plain.len());
    sealer.push(&plain[..at], &mut sealed);
    sealer.push(&plain[at..], &mut sealed);
    sealer.finish(&mut sealed);
    assert_eq!(open(&sealed, &key).unwrap(), plain);
    let other = DataKey::from_bytes(&[4; 32]).unwrap();
    assert!(open(&sealed, &other).is_err());

    let cut_at = usize::from(cut) * sealed.len() / 256;
    assert!(
        open(&sealed[..cut_at], &key).is_err(),
        "cut at {cut_at} of {}",
        sealed.len()
    );
    let mut changed = sealed.clone();
    let i = usize::from(flip) * changed.len() / 256;
    changed[i] ^= 1 + (cut & 0x7f);
    assert!(open(&changed, &key).is_err(), "byte {i} changed");
    let mut longer = sealed;
    longer.push(0);
    assert!(open(&longer, &key).is_err());
});
