//! Decode benchmarks (filled in with the remote_write decoder).
fn main() {}
