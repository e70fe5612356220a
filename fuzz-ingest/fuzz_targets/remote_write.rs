//! The remote_write decoder never panics on arbitrary bytes (raw, and wrapped in a valid
//! snappy block so the protobuf reader sees them); it agrees with the derived prost messages
//! on every body (both reject it, or both give the same batch); and what it accepts survives
//! a re-encode/decode round trip unchanged, sample value bits included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_ingest::{decode_write_request, decode_write_request_with_prost, encode_write_request};

const MAX: usize = 1 << 20;

fn check(body: &[u8]) {
    let ours = decode_write_request(body, MAX);
    let theirs = decode_write_request_with_prost(body, MAX);
    let batch = match (ours, theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the hand-written reader and prost disagree");
            a
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.code(), b.code());
            return;
        }
        (a, b) => panic!("one decoder accepts what the other rejects:\nours {a:?}\nprost {b:?}"),
    };
    let again = encode_write_request(&batch.to_write_request());
    let back = decode_write_request(&again, 64 << 20).expect("re-encoded batch must decode");
    assert!(
        back.rejected.is_empty(),
        "re-encoded batch rejected: {:?}",
        back.rejected
    );
    assert_eq!(back.series, batch.series);
    assert_eq!(back.metadata, batch.metadata);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut enc = snap::raw::Encoder::new();
    if let Ok(snappy) = enc.compress_vec(data) {
        check(&snappy);
    }
});
