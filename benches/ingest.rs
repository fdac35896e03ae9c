//! Criterion benches (written with the performance work).
fn main() {}
