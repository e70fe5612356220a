//! `decode_write_request` never panics on arbitrary bytes (raw, and wrapped in a valid
//! snappy block so the protobuf decoder sees them), and what it accepts survives a
//! re-encode/decode round trip unchanged, sample value bits included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_ingest::{decode_write_request, encode_write_request};

const MAX: usize = 1 << 20;

fn check(body: &[u8]) {
    let Ok(batch) = decode_write_request(body, MAX) else {
        return;
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
