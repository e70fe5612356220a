//! Decoding arbitrary bytes as each chunk encoding returns Ok or Err and never panics; what
//! decodes re-encodes (XOR, Pco and encode_best) to bytes that decode to the same samples.
//!
//! `cargo +nightly fuzz run chunk_decode` (or `cargo fuzz run -s none chunk_decode` on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_model::Sample;
use metricsd_tsdb::chunkenc::{Encoding, XOR_MAX_SAMPLES, decode, encode_best, encode_pco, encode_xor};

fn same(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
}

fn redecode(enc: Encoding, bytes: &[u8], want: &[Sample]) {
    let mut again = Vec::new();
    decode(enc, bytes, &mut again).expect("re-encoded chunk must decode");
    assert!(same(&again, want), "{enc:?} round trip changed the samples");
}

fuzz_target!(|data: &[u8]| {
    for enc in [Encoding::Xor, Encoding::Pco] {
        let mut samples = Vec::new();
        if decode(enc, data, &mut samples).is_err() {
            assert!(samples.is_empty(), "failed decode must leave dst unchanged");
            continue;
        }
        if samples.len() <= XOR_MAX_SAMPLES {
            redecode(Encoding::Xor, &encode_xor(&samples).unwrap(), &samples);
        }
        redecode(Encoding::Pco, &encode_pco(&samples).unwrap(), &samples);
        let (best, bytes) = encode_best(&samples);
        redecode(best, &bytes, &samples);
    }
});
