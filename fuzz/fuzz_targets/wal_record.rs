//! WAL record decoding never panics on arbitrary bytes, alone or as a sequence sharing one
//! segment's state (format v2); what decodes re-encodes, in both formats, to bytes that
//! decode to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_tsdb::wal::Record;
use metricsd_tsdb::wal::codec::{Decoder, Encoder};

/// Records compared with sample values as bits (NaN payloads count).
fn key(r: &Record) -> String {
    match r {
        Record::Samples(s) => format!("{:?}", s.iter().map(|x| (x.series_ref, x.t, x.v.to_bits())).collect::<Vec<_>>()),
        other => format!("{other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // v1 alone: a fresh state.
    if let Ok(rec) = Record::decode(data) {
        let mut buf = Vec::new();
        rec.encode(&mut buf);
        let again = Record::decode(&buf).expect("re-encoded record must decode");
        let mut buf2 = Vec::new();
        again.encode(&mut buf2);
        assert_eq!(buf, buf2, "encode(decode(encode(x))) differs");
    }
    // A segment: the input split at 0xff bytes into payloads decoded in order with one
    // state; those that decode are re-encoded as v2 with one encoder and must read back.
    let mut dec = Decoder::new();
    let recs: Vec<Record> = data
        .split(|&b| b == 0xff)
        .filter_map(|p| Record::decode_in(p, &mut dec).ok())
        .collect();
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    for r in &recs {
        let mut buf = Vec::new();
        enc.encode(r, &mut buf);
        let back = Record::decode_in(&buf, &mut dec).expect("v2 re-encoding must decode");
        assert_eq!(key(&back), key(r), "v2 round trip differs");
    }
});
