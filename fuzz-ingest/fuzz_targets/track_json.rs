//! The one track-API parser (`metricsd_ingest::parse_track`/`parse_batch`, which the server
//! uses) never panics, and its paths agree:
//! - an accepted item has a finite value and sorted, unique label names;
//! - the borrowed fast path and the `Value`-tree slow path (`parse_item`) accept the same
//!   objects and produce the same item;
//! - an item of a batch parses exactly like the same bytes sent alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_ingest::{parse_batch, parse_item, parse_track};

fuzz_target!(|data: &[u8]| {
    let one = parse_track(data);
    if let Ok(t) = &one {
        assert!(t.value.is_finite(), "non-finite value accepted: {t:?}");
        assert!(
            t.labels.windows(2).all(|w| w[0].0 < w[1].0),
            "labels not sorted and unique: {t:?}"
        );
    }
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(data) {
        let slow = parse_item(&v);
        assert_eq!(one.as_ref().ok(), slow.as_ref().ok(), "fast and slow paths disagree");
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
