//! Decode throughput of the ingest paths, in samples per second.
//!
//! - `remote_write/*`: one remote_write request of 2,000 series with one sample each: one
//!   scrape of node_exporter hosts from `metricsd-datagen` ([`metricsd_datagen::scrape`]:
//!   three whole hosts and the first 207 series of a fourth, every family with its real label
//!   shapes, `instance`/`job`), snappy-compressed.
//!   `prost_reference` decodes it with the derived prost messages (the reference the
//!   hand-written reader is checked against); `node_exporter_2000` with a reused
//!   [`RemoteWriteDecoder`] into label sets (every series new); `keyed_known` with
//!   `decode_keyed` when every series' key is known, the steady state of a server.
//! - `track_json/batch_100`: a 100-item `/metrics/track/batch` body.
//!
//! Run briefly: `cargo bench -p metricsd-ingest --bench decode -- --warm-up-time 1
//! --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metricsd_datagen::GenConfig;
use metricsd_ingest::{
    KeyedBatch, Label, RemoteWriteDecoder, Sample, SeriesId, TimeSeries, WriteBatch, WriteRequest,
    decode_write_request_with_prost, encode_write_request, parse_batch,
};
use metricsd_model::Limits;

/// One scrape of node_exporter-like hosts, cut at `n` series, as one request.
fn node_exporter_request(n: usize) -> WriteRequest {
    let timeseries = metricsd_datagen::scrape(&GenConfig::default(), n)
        .into_iter()
        .map(|(labels, s)| TimeSeries {
            labels: Label::from_labels(&labels),
            samples: vec![Sample {
                value: s.v,
                timestamp: s.t,
            }],
            exemplars: vec![],
            histograms: vec![],
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

fn json_batch(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name":"api_requests_total","value":{i},"type":"counter","labels":{{"service":"gateway","endpoint":"/api/v1/instruments/{i}","method":"GET","status_code":"200"}},"service":"gateway-service","tenant_id":"tenant-1","timestamp":"2024-01-15T10:30:00Z"}}"#
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn bench(c: &mut Criterion) {
    let req = node_exporter_request(2000);
    let body = encode_write_request(&req);
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(2000));
    let mut dec = RemoteWriteDecoder::new(64 << 20, Limits::default());
    let mut batch = WriteBatch::default();
    g.bench_function("prost_reference", |b| {
        b.iter(|| {
            let batch = decode_write_request_with_prost(black_box(&body), 64 << 20).expect("valid request");
            assert_eq!(batch.series.len(), 2000);
        })
    });
    g.bench_function("node_exporter_2000", |b| {
        b.iter(|| {
            dec.decode(black_box(&body), &mut batch).expect("valid request");
            assert_eq!(batch.series.len(), 2000);
        })
    });
    // Every key known: what a server does for series it has seen.
    let mut keyed = KeyedBatch::<usize>::default();
    let mut known = std::collections::HashMap::new();
    dec.decode_keyed(&body, &mut keyed, |_| None)
        .expect("valid request");
    for (i, (id, _)) in keyed.iter().enumerate() {
        if let SeriesId::New { key, .. } = id {
            known.insert(*key, i);
        }
    }
    g.bench_function("keyed_known", |b| {
        b.iter(|| {
            dec.decode_keyed(black_box(&body), &mut keyed, |k| known.get(&k).copied())
                .expect("valid request");
            assert_eq!(keyed.series.len(), 2000);
        })
    });
    g.finish();

    let json = json_batch(100);
    let mut g = c.benchmark_group("track_json");
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_100", |b| {
        b.iter(|| {
            let items = parse_batch(black_box(json.as_bytes()), 1000).expect("valid batch");
            assert!(items.iter().all(|r| r.is_ok()));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
