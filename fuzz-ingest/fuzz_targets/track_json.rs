//! `parse_track` and `parse_batch` never panic, and agree with each other: an item of a
//! batch parses exactly like the same bytes sent alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_ingest::{parse_batch, parse_track};

fuzz_target!(|data: &[u8]| {
    let one = parse_track(data);
    if let Ok(t) = &one {
        assert!(t.value.is_finite(), "non-finite value accepted: {t:?}");
    }
    let _ = parse_batch(data, 16);
    // Wrap the input as a one-item batch; if it is a valid JSON object the item result must
    // equal the single-object result.
    let mut wrapped = Vec::with_capacity(data.len() + 2);
    wrapped.push(b'[');
    wrapped.extend_from_slice(data);
    wrapped.push(b']');
    if let (Ok(items), Ok(t)) = (parse_batch(&wrapped, 16), &one)
        && let [Ok(item)] = items.as_slice()
    {
        assert_eq!(item, t);
    }
});
