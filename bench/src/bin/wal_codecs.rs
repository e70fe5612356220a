//! wal_codecs: bytes per sample and speed of WAL record encodings on node_exporter-like data.
//!
//! Builds the WAL records a metricsd head would log for `--hosts` hosts × `--steps` scrapes
//! (one series record per series, then sample records) in two shapes:
//! - `scrape`: one record per host and scrape (every series of the host, one sample each),
//!   as scrapes and Prometheus' remote_write senders batch;
//! - `backfill`: records of `--series-per-record` series × `--block` consecutive samples,
//!   as `query_compare` and `ingest_compare` load history over remote_write.
//!
//! and encodes them with: format v1 (types 1–3, what metricsd wrote before issue 12); v1
//! with each record compressed by snappy, LZ4 (lz4_flex), zstd level 1 and 3; and format v2
//! (`metricsd_tsdb::wal::codec`, the state of one segment). Prints bytes per sample (series
//! records included), encode and decode throughput, and the ratio to v1.
//!
//! `wal_codecs --hosts 150 --steps 480` is the 100k-series data set of `query_compare`.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use metricsd_bench::datagen::{self, GenConfig, Profile};
use metricsd_tsdb::wal::codec::{Decoder, Encoder};
use metricsd_tsdb::wal::{Record, RefSample, RefSeries};

#[derive(Debug, Parser)]
#[command(about = "Compare WAL record encodings (v1, v1 + snappy/lz4/zstd, v2) on node_exporter-like data")]
struct Args {
    /// Hosts (about 670 series each).
    #[arg(long, default_value_t = 30)]
    hosts: usize,
    /// Scrapes per series.
    #[arg(long, default_value_t = 480)]
    steps: usize,
    /// Backfill shape: series per record.
    #[arg(long, default_value_t = 500)]
    series_per_record: usize,
    /// Backfill shape: consecutive samples per series per record.
    #[arg(long, default_value_t = 40)]
    block: usize,
    /// Smooth values instead of noisy ones.
    #[arg(long)]
    smooth: bool,
    /// Scrape jitter, ms.
    #[arg(long, default_value_t = 0)]
    jitter_ms: i64,
}

#[derive(Clone, Copy, Debug)]
enum Codec {
    V1,
    V1Snappy,
    V1Lz4,
    V1Zstd1,
    V1Zstd3,
    V2,
}

impl Codec {
    const ALL: [Codec; 6] = [
        Codec::V1,
        Codec::V1Snappy,
        Codec::V1Lz4,
        Codec::V1Zstd1,
        Codec::V1Zstd3,
        Codec::V2,
    ];
    fn name(self) -> &'static str {
        match self {
            Codec::V1 => "v1",
            Codec::V1Snappy => "v1 + snappy",
            Codec::V1Lz4 => "v1 + lz4",
            Codec::V1Zstd1 => "v1 + zstd 1",
            Codec::V1Zstd3 => "v1 + zstd 3",
            Codec::V2 => "v2",
        }
    }
}

/// Encodes every record (each compressed on its own, as a WAL frame would be); returns the
/// payloads.
fn encode(codec: Codec, recs: &[Record]) -> Result<Vec<Vec<u8>>> {
    let mut enc = Encoder::new();
    let mut snappy = snap::raw::Encoder::new();
    let mut out = Vec::with_capacity(recs.len());
    for r in recs {
        let mut raw = Vec::new();
        if let Codec::V2 = codec {
            enc.encode(r, &mut raw);
            out.push(raw);
            continue;
        }
        r.encode(&mut raw);
        out.push(match codec {
            Codec::V1 => raw,
            Codec::V1Snappy => snappy.compress_vec(&raw)?,
            Codec::V1Lz4 => lz4_flex::compress_prepend_size(&raw),
            Codec::V1Zstd1 => zstd::bulk::compress(&raw, 1)?,
            Codec::V1Zstd3 => zstd::bulk::compress(&raw, 3)?,
            Codec::V2 => unreachable!(),
        });
    }
    Ok(out)
}

/// Decodes the payloads; returns the number of samples (a check against the input).
fn decode(codec: Codec, payloads: &[Vec<u8>]) -> Result<usize> {
    let mut dec = Decoder::new();
    let mut snappy = snap::raw::Decoder::new();
    let mut n = 0;
    for p in payloads {
        let rec = match codec {
            Codec::V1 => Record::decode(p)?,
            Codec::V2 => Record::decode_in(p, &mut dec)?,
            Codec::V1Snappy => Record::decode(&snappy.decompress_vec(p)?)?,
            Codec::V1Lz4 => Record::decode(&lz4_flex::decompress_size_prepended(p)?)?,
            Codec::V1Zstd1 | Codec::V1Zstd3 => Record::decode(&zstd::bulk::decompress(p, 64 << 20)?)?,
        };
        if let Record::Samples(s) = rec {
            n += s.len();
        }
    }
    Ok(n)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let cfg = GenConfig {
        hosts: a.hosts,
        samples_per_series: a.steps,
        jitter_ms: a.jitter_ms,
        profile: if a.smooth { Profile::Smooth } else { Profile::Noisy },
        ..GenConfig::default()
    };
    let t0 = Instant::now();
    let ds = datagen::generate(&cfg);
    let n = ds.series.len();
    let samples: Vec<Vec<metricsd_model::Sample>> = (0..n).map(|i| ds.samples(i)).collect();
    let total: usize = samples.iter().map(Vec::len).sum();
    let series_recs: Vec<Record> = ds
        .series
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Record::Series(vec![RefSeries {
                series_ref: i as u64 + 1,
                labels: l.clone(),
            }])
        })
        .collect();
    // Series of each host, for the scrape shape.
    let mut by_host: Vec<Vec<usize>> = Vec::new();
    for (i, l) in ds.series.iter().enumerate() {
        let inst = l.get("instance").unwrap_or("").to_string();
        match by_host
            .iter_mut()
            .find(|h| ds.series[h[0]].get("instance") == Some(inst.as_str()))
        {
            Some(h) => h.push(i),
            None => by_host.push(vec![i]),
        }
    }
    let scrape: Vec<Record> = series_recs
        .iter()
        .cloned()
        .chain((0..a.steps).flat_map(|step| {
            by_host
                .iter()
                .map(|h| {
                    Record::Samples(
                        h.iter()
                            .map(|&i| RefSample {
                                series_ref: i as u64 + 1,
                                t: samples[i][step].t,
                                v: samples[i][step].v,
                            })
                            .collect(),
                    )
                })
                .collect::<Vec<_>>()
        }))
        .collect();
    let mut backfill = series_recs.clone();
    for start in (0..a.steps).step_by(a.block) {
        for group in (0..n).collect::<Vec<_>>().chunks(a.series_per_record) {
            let mut rec = Vec::new();
            for &i in group {
                for s in &samples[i][start..(start + a.block).min(a.steps)] {
                    rec.push(RefSample {
                        series_ref: i as u64 + 1,
                        t: s.t,
                        v: s.v,
                    });
                }
            }
            backfill.push(Record::Samples(rec));
        }
    }
    println!(
        "== {n} series ({} hosts) × {} samples = {total} samples ({}); generated in {:.1} s",
        a.hosts,
        a.steps,
        if a.smooth { "smooth" } else { "noisy" },
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{:<10} {:<13} {:>10} {:>9} {:>11} {:>13} {:>13}",
        "shape", "codec", "MB", "B/sample", "series B", "encode Ms/s", "decode Ms/s"
    );
    for (shape, recs) in [("scrape", &scrape), ("backfill", &backfill)] {
        let mut v1_bytes = 0.0;
        for codec in Codec::ALL {
            let t = Instant::now();
            let payloads = encode(codec, recs)?;
            let enc_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let got = decode(codec, &payloads)?;
            let dec_s = t.elapsed().as_secs_f64();
            anyhow::ensure!(got == total, "{}: decoded {got} samples of {total}", codec.name());
            let bytes: usize = payloads.iter().map(Vec::len).sum();
            let series_bytes: usize = payloads[..n].iter().map(Vec::len).sum();
            if let Codec::V1 = codec {
                v1_bytes = bytes as f64;
            }
            println!(
                "{:<10} {:<13} {:>10.1} {:>9.3} {:>11.1} {:>13.1} {:>13.1}   {:.3}× v1",
                shape,
                codec.name(),
                bytes as f64 / 1e6,
                bytes as f64 / total as f64,
                series_bytes as f64 / n as f64,
                total as f64 / enc_s / 1e6,
                total as f64 / dec_s / 1e6,
                bytes as f64 / v1_bytes
            );
        }
    }
    // The head's own codings of the same samples: chunks of 120 samples per series, XOR
    // (as cut) and what the settle pass writes to `chunks_head/` (Pco where smaller).
    use metricsd_tsdb::chunkenc::{Effort, encode_best_with};
    for (name, effort) in [
        ("xor 120", None),
        ("best 120", Some(Effort::Full)),
        ("fast 120", Some(Effort::Fast)),
    ] {
        let t = Instant::now();
        let mut bytes = 0usize;
        for ss in &samples {
            for c in ss.chunks(120) {
                bytes += match effort {
                    Some(e) => encode_best_with(c, e).1.len(),
                    None => metricsd_tsdb::chunkenc::encode_xor(c)?.len(),
                };
            }
        }
        let enc_s = t.elapsed().as_secs_f64();
        println!(
            "{:<10} {:<13} {:>10.1} {:>9.3} {:>11} {:>13.1}",
            "chunks",
            name,
            bytes as f64 / 1e6,
            bytes as f64 / total as f64,
            "",
            total as f64 / enc_s / 1e6,
        );
    }
    println!("(B/sample counts series records too; series B: bytes per series record; one thread)");
    Ok(())
}
