//! Figures of the storage engine on node_exporter-like data: ingest throughput through the
//! WAL, RSS per active series, WAL replay and start-up time, full-scan decode speed, regex
//! select latency, bytes per sample in the head and in blocks.
//!
//! `cargo run --release -p metricsd-bench --bin tsdb_figures -- --hosts 150 --hours 2`
//! (150 hosts ≈ 100k series), and `--series-only 1000000` for the start-up and select
//! figures at 1M series. Prints a table and, with `--json PATH`, writes the figures.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use metricsd_bench::datagen::{self, GenConfig, Profile};
use metricsd_model::{Labels, MatchOp, Matcher, Sample};
use metricsd_tsdb::{Db, DbOptions, Queryable};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Hosts of node_exporter-like series (≈670 series per host).
    #[arg(long, default_value_t = 150)]
    hosts: usize,
    /// Hours of data at 15 s.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Instead of the data set: this many synthetic series with 4 samples each, for the
    /// start-up and select figures at large series counts.
    #[arg(long)]
    series_only: Option<usize>,
    /// Samples per commit.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Where the store goes (a temp dir by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|x| x.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let (series, rows): (Vec<Labels>, Vec<Vec<Sample>>) = match a.series_only {
        Some(n) => {
            let start = datagen::DEFAULT_START_MS;
            let labels = (0..n)
                .map(|i| {
                    Labels::from_pairs([
                        ("__name__", format!("metric_{}", i % 100)),
                        ("instance", format!("host-{}:9100", i / 100)),
                        ("job", "node".to_owned()),
                    ])
                })
                .collect();
            let rows = (0..4)
                .map(|s| {
                    (0..n)
                        .map(|i| Sample::new(start + s * 15_000, (i + s as usize) as f64))
                        .collect()
                })
                .collect();
            (labels, rows)
        }
        None => {
            let cfg = GenConfig {
                hosts: a.hosts,
                samples_per_series: GenConfig::samples_for(a.hours, 15_000),
                jitter_ms: 5,
                profile: Profile::Noisy,
                ..GenConfig::default()
            };
            let ds = datagen::generate(&cfg);
            // Step-major rows, as scrapes arrive: row s holds every series' s-th sample.
            let mut rows: Vec<Vec<Sample>> = (0..cfg.samples_per_series)
                .map(|_| Vec::with_capacity(ds.num_series()))
                .collect();
            for (_, samples) in ds.iter() {
                for (s, x) in samples.into_iter().enumerate() {
                    rows[s].push(x);
                }
            }
            (ds.series.clone(), rows)
        }
    };
    let n_series = series.len();
    let n_samples: usize = rows.iter().map(Vec::len).sum();
    println!(
        "{n_series} series, {n_samples} samples; store in {}",
        dir.display()
    );

    let opts = DbOptions {
        retention_ms: 0,
        ..DbOptions::default()
    };
    let rss0 = rss_bytes();
    let (db, _) = Db::open(&dir, "default", opts.clone())?;
    let t = Instant::now();
    for row in &rows {
        for (k, chunk) in row.chunks(a.batch).enumerate() {
            let mut app = db.appender();
            for (j, x) in chunk.iter().enumerate() {
                app.append(series[k * a.batch + j].clone(), x.t, x.v);
            }
            let r = app.commit()?;
            anyhow::ensure!(
                r.rejected.is_empty(),
                "rejected: {:?}",
                r.rejected.first().map(|x| x.1.to_string())
            );
        }
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let rss1 = rss_bytes();
    let stats = db.stats(5);
    let head_bytes = stats.head_bytes;
    let wal_bytes = dir_bytes(&dir.join("wal"));
    println!(
        "ingest through WAL: {:.2} s, {:.0} samples/s; RSS delta {:.0} B/series; head estimate {:.0} B/series; WAL {:.2} B/sample",
        ingest_s,
        n_samples as f64 / ingest_s,
        (rss1.saturating_sub(rss0)) as f64 / n_series as f64,
        head_bytes as f64 / n_series as f64,
        wal_bytes as f64 / n_samples as f64
    );
    // Re-encode closed head chunks (what the maintenance thread does every minute).
    let t = Instant::now();
    let (nre, bre, are) = db.head().recompress(true);
    let recompress_s = t.elapsed().as_secs_f64();
    let head_bytes2 = db.head().mem_size();
    let rss2 = rss_bytes();
    println!(
        "recompress: {nre} chunks {bre} → {are} bytes in {recompress_s:.2} s; head estimate {:.0} B/series, RSS delta {:.0} B/series (the allocator may keep freed pages)",
        head_bytes2 as f64 / n_series as f64,
        rss2.saturating_sub(rss0) as f64 / n_series as f64
    );

    // Full scan from the head.
    let all = [Matcher::new(MatchOp::Regex, "__name__", ".+")?];
    let t = Instant::now();
    let q = db.querier(i64::MIN, i64::MAX)?;
    let sel = q.select(&all)?;
    let select_all_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut scanned = 0u64;
    let mut sum = 0.0;
    for s in &sel {
        for x in s.iter() {
            scanned += 1;
            sum += x.v;
        }
    }
    let scan_head_s = t.elapsed().as_secs_f64();
    drop(sel);
    drop(q);
    println!(
        "head: select all {:.3} s; scan {scanned} samples in {:.3} s = {:.1} M samples/s (checksum {sum:.3e})",
        select_all_s,
        scan_head_s,
        scanned as f64 / scan_head_s / 1e6
    );

    // Regex select latency.
    // Hosts 10-19 in both modes ("host-00012:9100", "host-12:9100").
    let re = [Matcher::new(MatchOp::Regex, "instance", "host-0*1[0-9]:9100")?];
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let q = db.querier(i64::MIN, i64::MAX)?;
        let n = q.select(&re)?.len();
        lat.push((t.elapsed().as_secs_f64(), n));
    }
    lat.sort_by(|x, y| x.0.total_cmp(&y.0));
    println!(
        "head: regex select {{instance=~\"host-1.*\"}} median {:.2} ms ({} series)",
        lat[2].0 * 1e3,
        lat[2].1
    );

    // Close and reopen: WAL replay.
    drop(db);
    let t = Instant::now();
    let (db, rep) = Db::open(&dir, "default", opts.clone())?;
    let open_s = t.elapsed().as_secs_f64();
    println!(
        "reopen (WAL replay): {:.2} s, {:.0} samples/s replayed ({} samples, {} series)",
        open_s,
        rep.replayed_samples as f64 / rep.replay_duration.as_secs_f64(),
        rep.replayed_samples,
        db.head().num_series()
    );

    // A head checkpoint (chunks settled into chunks_head/ first), then reopen from it.
    let t = Instant::now();
    let cp = db.checkpoint_head()?;
    let checkpoint_s = t.elapsed().as_secs_f64();
    let head_disk = dir_bytes(&dir.join("wal")) + dir_bytes(&dir.join("chunks_head"));
    println!(
        "head checkpoint: {:.2} s (settle pass included), checkpoint {:.2} B/sample; WAL + chunks_head {:.2} B/sample",
        checkpoint_s,
        cp.bytes_written as f64 / n_samples as f64,
        head_disk as f64 / n_samples as f64
    );
    drop(db);
    let t = Instant::now();
    let (db, rep) = Db::open(&dir, "default", opts.clone())?;
    let open_cp_s = t.elapsed().as_secs_f64();
    println!(
        "reopen (after the head checkpoint): {:.2} s, {} chunks handed back, {} samples replayed",
        open_cp_s, rep.replayed_chunks, rep.replayed_samples,
    );

    // Persist everything into blocks and scan again from the blocks.
    let maxt = db.head().max_time().unwrap_or(0);
    let t = Instant::now();
    db.flush_head_before(maxt + 2 * 3600 * 1000)?;
    let flush_s = t.elapsed().as_secs_f64();
    let blocks = db.blocks();
    let block_bytes: u64 = blocks.iter().map(|b| dir_bytes(b.dir())).sum();
    let block_index: u64 = blocks
        .iter()
        .map(|b| std::fs::metadata(b.dir().join("index")).map_or(0, |m| m.len()))
        .sum();
    println!(
        "blocks: {} written in {:.2} s; {:.3} B/sample total, {:.3} B/sample index",
        blocks.len(),
        flush_s,
        block_bytes as f64 / n_samples as f64,
        block_index as f64 / n_samples as f64
    );
    let t = Instant::now();
    let q = db.querier(i64::MIN, i64::MAX)?;
    let sel = q.select(&all)?;
    let mut scanned_b = 0u64;
    for s in &sel {
        scanned_b += s.iter().count() as u64;
    }
    let scan_block_s = t.elapsed().as_secs_f64();
    println!(
        "blocks: select + scan {scanned_b} samples in {scan_block_s:.3} s = {:.1} M samples/s",
        scanned_b as f64 / scan_block_s / 1e6
    );
    let t = Instant::now();
    let q = db.querier(i64::MIN, i64::MAX)?;
    let nre = q.select(&re)?.len();
    let re_block_s = t.elapsed().as_secs_f64();
    println!("blocks: regex select {:.2} ms ({nre} series)", re_block_s * 1e3);

    if let Some(p) = &a.json {
        let j = json!({
            "series": n_series, "samples": n_samples, "batch": a.batch,
            "ingest_seconds": ingest_s, "ingest_samples_per_s": n_samples as f64 / ingest_s,
            "rss_delta_bytes_per_series": rss1.saturating_sub(rss0) as f64 / n_series as f64,
            "head_estimate_bytes_per_series": head_bytes as f64 / n_series as f64,
            "wal_bytes_per_sample": wal_bytes as f64 / n_samples as f64,
            "recompress_seconds": recompress_s,
            "head_estimate_bytes_per_series_after_recompress": head_bytes2 as f64 / n_series as f64,
            "rss_delta_bytes_per_series_after_recompress": rss2.saturating_sub(rss0) as f64 / n_series as f64,
            "head_scan_samples_per_s": scanned as f64 / scan_head_s,
            "head_regex_select_ms": lat[2].0 * 1e3,
            "reopen_seconds": open_s,
            "head_checkpoint_seconds": checkpoint_s,
            "head_disk_bytes_per_sample_after_checkpoint": head_disk as f64 / n_samples as f64,
            "reopen_after_checkpoint_seconds": open_cp_s,
            "replay_samples_per_s": rep.replayed_samples as f64 / rep.replay_duration.as_secs_f64(),
            "block_bytes_per_sample": block_bytes as f64 / n_samples as f64,
            "block_index_bytes_per_sample": block_index as f64 / n_samples as f64,
            "block_scan_samples_per_s": scanned_b as f64 / scan_block_s,
            "block_regex_select_ms": re_block_s * 1e3,
        });
        std::fs::write(p, serde_json::to_string_pretty(&j)? + "\n")
            .with_context(|| p.display().to_string())?;
    }
    Ok(())
}
