//! WAL record decoding never panics on arbitrary bytes; what decodes re-encodes to bytes that
//! decode to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_tsdb::wal::Record;

fuzz_target!(|data: &[u8]| {
    let Ok(rec) = Record::decode(data) else { return };
    let mut buf = Vec::new();
    rec.encode(&mut buf);
    let again = Record::decode(&buf).expect("re-encoded record must decode");
    let mut buf2 = Vec::new();
    again.encode(&mut buf2);
    assert_eq!(buf, buf2, "encode(decode(encode(x))) differs");
});
