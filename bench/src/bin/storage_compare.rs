//! storage_compare: bytes per sample of metricsd vs Prometheus on a node_exporter-like data set.
//!
//! 1. Generates the data set ([`metricsd_bench::datagen`]) and writes it as OpenMetrics.
//! 2. Runs `promtool tsdb create-blocks-from openmetrics` and measures the blocks it writes
//!    (chunks, index, total; sample counts checked against the data set from `meta.json`).
//! 3. Encodes the same samples on the metricsd side (see [`metricsd_side`]) and, as a sanity
//!    check, with our Prometheus-compatible XOR chunk in Prometheus' 120-sample chunks.
//! 4. Prints a table with ratios and optionally writes JSON (`--json`).
//!
//! Example (the figures in docs/benchmarks.md):
//! `storage_compare --series 100000 --hours 2 --interval 15s --profile noisy --jitter --json r.json`

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use metricsd_bench::datagen::{self, GenConfig, Profile};
use metricsd_bench::openmetrics;
use metricsd_model::Sample;
use metricsd_tsdb::chunkenc::{self, Encoding, XorChunk};
use serde_json::{Value, json};

const BLOCK_MS: i64 = 2 * 3600 * 1000;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    Noisy,
    Smooth,
}

#[derive(Debug, Parser)]
#[command(about = "Compare metricsd's bytes per sample with Prometheus' on a node_exporter-like data set")]
struct Args {
    /// Number of hosts (≈670 series each on average).
    #[arg(long, default_value_t = 150)]
    hosts: usize,
    /// Instead of --hosts: the smallest number of hosts giving at least this many series.
    #[arg(long)]
    series: Option<usize>,
    /// Hours of data.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Scrape interval (e.g. 15s, 1m, 500ms).
    #[arg(long, default_value = "15s", value_parser = parse_duration_ms)]
    interval: i64,
    /// Value behaviour.
    #[arg(long, value_enum, default_value = "noisy")]
    profile: ProfileArg,
    /// Scrape timestamp jitter in ms (`--jitter` alone: ±5 ms; absent: exact timestamps).
    #[arg(long, num_args = 0..=1, default_missing_value = "5", default_value_t = 0)]
    jitter: i64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Probability that a host reboots (all its counters reset) in the window (noisy only).
    #[arg(long, default_value_t = 0.02)]
    reboot_prob: f64,
    /// Where to write the OpenMetrics file (default /tmp/metricsd-bench/<shape>.om).
    #[arg(long)]
    om: Option<PathBuf>,
    /// Output directory for promtool's blocks (default /tmp/metricsd-bench/<shape>.prom);
    /// must not exist or be empty.
    #[arg(long)]
    prom_out: Option<PathBuf>,
    /// Keep the OpenMetrics file and the Prometheus blocks (deleted after measuring otherwise).
    #[arg(long)]
    keep: bool,
    /// Only the metricsd side: no OpenMetrics file, no promtool.
    #[arg(long)]
    skip_prometheus: bool,
    /// The promtool binary.
    #[arg(long, default_value = "promtool")]
    promtool: String,
    /// metricsd side: maximal samples per chunk (one 2h block of 15s scrapes = 480).
    #[arg(long, default_value_t = 480)]
    chunk_samples: usize,
    /// XOR sanity check: samples per chunk (Prometheus cuts head chunks at 120).
    #[arg(long, default_value_t = 120)]
    xor_chunk_samples: usize,
    /// Decode every chunk and compare with the input (slower).
    #[arg(long)]
    verify: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return Err(format!("{s:?}: expected a duration like 15s, 1m, 500ms"));
    };
    let v: f64 = num.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let ms = (v * mult).round() as i64;
    if ms <= 0 {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok(ms)
}

/// Splits sorted samples into chunks: by 2h block window, then at most `max` samples each.
fn for_each_chunk(samples: &[Sample], max: usize, mut f: impl FnMut(&[Sample])) {
    let mut i = 0;
    while i < samples.len() {
        let w = samples[i].t.div_euclid(BLOCK_MS);
        let mut j = i + 1;
        while j < samples.len() && j - i < max && samples[j].t.div_euclid(BLOCK_MS) == w {
            j += 1;
        }
        f(&samples[i..j]);
        i = j;
    }
}

fn check_decode(enc: Encoding, data: &[u8], want: &[Sample], buf: &mut Vec<Sample>) -> Result<()> {
    buf.clear();
    chunkenc::decode(enc, data, buf).with_context(|| format!("decoding a {enc:?} chunk"))?;
    ensure!(
        buf.as_slice() == want,
        "{enc:?} chunk does not decode to its input"
    );
    Ok(())
}

// =======================================================================================
// METRICSD SIDE — the swap point.
//
// Today: each series' samples, cut into 2h windows and chunks of at most `chunk_samples`,
// encoded with `metricsd_tsdb::chunkenc::encode_best`; bytes = chunk payload + 1 encoding
// byte per chunk (the encoding byte persisted beside each chunk). No index, no framing.
//
// Later: replace `MetricsdSide` by a full-block measurement with
// `metricsd_tsdb::block::write_block` (chunks + index + meta, measured on disk like the
// Prometheus side), keeping the `report()` fields so the table and JSON stay comparable.
// =======================================================================================

/// The metricsd-side accumulator: fed every series' samples once.
struct MetricsdSide {
    chunk_samples: usize,
    verify: bool,
    samples: u64,
    chunks: u64,
    payload_bytes: u64,
    chunks_xor: u64,
    chunks_pco: u64,
    time: Duration,
    dec: Vec<Sample>,
}

impl MetricsdSide {
    fn new(chunk_samples: usize, verify: bool) -> Self {
        MetricsdSide {
            chunk_samples,
            verify,
            samples: 0,
            chunks: 0,
            payload_bytes: 0,
            chunks_xor: 0,
            chunks_pco: 0,
            time: Duration::ZERO,
            dec: Vec::new(),
        }
    }

    fn add_series(&mut self, samples: &[Sample]) -> Result<()> {
        let t0 = Instant::now();
        let mut err = Ok(());
        let (max, verify) = (self.chunk_samples, self.verify);
        let mut dec = std::mem::take(&mut self.dec);
        for_each_chunk(samples, max, |c| {
            let (enc, bytes) = chunkenc::encode_best(c);
            self.samples += c.len() as u64;
            self.chunks += 1;
            self.payload_bytes += bytes.len() as u64;
            match enc {
                Encoding::Xor => self.chunks_xor += 1,
                Encoding::Pco => self.chunks_pco += 1,
            }
            if verify && err.is_ok() {
                err = check_decode(enc, &bytes, c, &mut dec);
            }
        });
        self.dec = dec;
        self.time += t0.elapsed();
        err
    }

    /// Bytes the metricsd side stores for the samples.
    fn bytes(&self) -> u64 {
        self.payload_bytes + self.chunks
    }

    fn report(&self) -> Value {
        json!({
            "method": "chunkenc::encode_best per series, 2h windows, ≤chunk_samples per chunk; \
                       bytes = payload + 1 encoding byte per chunk; no index",
            "chunk_samples": self.chunk_samples,
            "samples": self.samples,
            "chunks": self.chunks,
            "chunks_xor": self.chunks_xor,
            "chunks_pco": self.chunks_pco,
            "payload_bytes": self.payload_bytes,
            "bytes": self.bytes(),
            "bytes_per_sample": self.bytes() as f64 / self.samples.max(1) as f64,
            "encode_seconds": self.time.as_secs_f64(),
            "verified": self.verify,
        })
    }
}

/// The XOR sanity check: our Prometheus-compatible XOR chunk, cut like Prometheus' head.
struct XorSide {
    chunk_samples: usize,
    verify: bool,
    samples: u64,
    chunks: u64,
    payload_bytes: u64,
    framed_bytes: u64,
    dec: Vec<Sample>,
}

impl XorSide {
    fn add_series(&mut self, samples: &[Sample]) -> Result<()> {
        let mut err = Ok(());
        let (max, verify) = (self.chunk_samples, self.verify);
        let mut dec = std::mem::take(&mut self.dec);
        for_each_chunk(samples, max, |c| {
            let mut x = XorChunk::new();
            for s in c {
                x.append(s.t, s.v);
            }
            let n = x.bytes().len() as u64;
            self.samples += x.num_samples() as u64;
            self.chunks += 1;
            self.payload_bytes += n;
            // Prometheus' chunk file framing: uvarint(len) + encoding byte + data + CRC32.
            self.framed_bytes += uvarint_len(n) + 1 + n + 4;
            if verify && err.is_ok() {
                err = check_decode(Encoding::Xor, x.bytes(), c, &mut dec);
            }
        });
        self.dec = dec;
        err
    }

    fn report(&self) -> Value {
        let s = self.samples.max(1) as f64;
        json!({
            "chunk_samples": self.chunk_samples,
            "samples": self.samples,
            "chunks": self.chunks,
            "payload_bytes": self.payload_bytes,
            "framed_bytes": self.framed_bytes,
            "payload_bytes_per_sample": self.payload_bytes as f64 / s,
            "framed_bytes_per_sample": self.framed_bytes as f64 / s,
        })
    }
}

fn uvarint_len(mut n: u64) -> u64 {
    let mut l = 1;
    while n >= 0x80 {
        n >>= 7;
        l += 1;
    }
    l
}

/// Sizes of the blocks promtool wrote.
#[derive(Debug, Default)]
struct PromBlocks {
    blocks: u64,
    chunks_bytes: u64,
    index_bytes: u64,
    other_bytes: u64,
    samples: u64,
    series: u64,
    chunks: u64,
}

impl PromBlocks {
    fn total(&self) -> u64 {
        self.chunks_bytes + self.index_bytes + self.other_bytes
    }
}

fn dir_bytes(p: &Path) -> Result<u64> {
    let mut n = 0;
    for e in fs::read_dir(p).with_context(|| format!("reading {}", p.display()))? {
        let e = e?;
        let md = e.metadata()?;
        n += if md.is_dir() {
            dir_bytes(&e.path())?
        } else {
            md.len()
        };
    }
    Ok(n)
}

fn measure_blocks(out: &Path) -> Result<PromBlocks> {
    let mut r = PromBlocks::default();
    for e in fs::read_dir(out)? {
        let dir = e?.path();
        let meta_path = dir.join("meta.json");
        if !meta_path.is_file() {
            continue;
        }
        let meta: Value = serde_json::from_slice(&fs::read(&meta_path)?)?;
        let stat = |k: &str| meta["stats"][k].as_u64().unwrap_or(0);
        r.blocks += 1;
        r.samples += stat("numSamples");
        r.series += stat("numSeries");
        r.chunks += stat("numChunks");
        let total = dir_bytes(&dir)?;
        let chunks = dir_bytes(&dir.join("chunks"))?;
        let index = fs::metadata(dir.join("index"))?.len();
        r.chunks_bytes += chunks;
        r.index_bytes += index;
        r.other_bytes += total - chunks - index;
    }
    ensure!(r.blocks > 0, "promtool wrote no block into {}", out.display());
    Ok(r)
}

fn main() -> Result<()> {
    let a = Args::parse();
    ensure!(
        a.chunk_samples > 0 && a.xor_chunk_samples > 0,
        "chunk sizes must be positive"
    );
    let mut cfg = GenConfig {
        hosts: a.hosts,
        interval_ms: a.interval,
        samples_per_series: GenConfig::samples_for(a.hours, a.interval),
        jitter_ms: a.jitter,
        profile: match a.profile {
            ProfileArg::Noisy => Profile::Noisy,
            ProfileArg::Smooth => Profile::Smooth,
        },
        seed: a.seed,
        reboot_prob: a.reboot_prob,
        ..Default::default()
    };
    ensure!(
        cfg.jitter_ms * 2 < cfg.interval_ms,
        "--jitter must be less than half the interval"
    );
    if let Some(target) = a.series {
        cfg.hosts = datagen::hosts_for_series(&cfg, target);
    }
    let t0 = Instant::now();
    let ds = datagen::generate(&cfg);
    let gen_shape_s = t0.elapsed().as_secs_f64();
    let shape = format!(
        "{:?}-{}hosts-{}series-{}x{}ms-jitter{}",
        cfg.profile,
        ds.num_hosts(),
        ds.num_series(),
        cfg.samples_per_series,
        cfg.interval_ms,
        cfg.jitter_ms
    )
    .to_lowercase();
    println!(
        "data set: {} hosts, {} families, {} series × {} samples = {} samples ({:?}, interval {} ms, jitter ±{} ms, seed {})",
        ds.num_hosts(),
        ds.families.len(),
        ds.num_series(),
        cfg.samples_per_series,
        ds.num_samples(),
        cfg.profile,
        cfg.interval_ms,
        cfg.jitter_ms,
        cfg.seed
    );

    let mut ours = MetricsdSide::new(a.chunk_samples, a.verify);
    let mut xor = XorSide {
        chunk_samples: a.xor_chunk_samples,
        verify: a.verify,
        samples: 0,
        chunks: 0,
        payload_bytes: 0,
        framed_bytes: 0,
        dec: Vec::new(),
    };
    let mut err: Result<()> = Ok(());
    let mut feed = |_: usize, s: &[Sample]| {
        if err.is_ok() {
            err = ours.add_series(s).and_then(|()| xor.add_series(s));
        }
    };

    let work = PathBuf::from("/tmp/metricsd-bench");
    let mut prom: Option<(PromBlocks, Value)> = None;
    let t1 = Instant::now();
    if a.skip_prometheus {
        let mut buf = Vec::new();
        for i in 0..ds.num_series() {
            ds.samples_into(i, &mut buf);
            feed(i, &buf);
        }
        err?;
        println!("generated and encoded in {:.1}s", t1.elapsed().as_secs_f64());
    } else {
        let om_path = a.om.clone().unwrap_or_else(|| work.join(format!("{shape}.om")));
        let out = a
            .prom_out
            .clone()
            .unwrap_or_else(|| work.join(format!("{shape}.prom")));
        if let Some(p) = om_path.parent() {
            fs::create_dir_all(p)?;
        }
        if out.exists() && fs::read_dir(&out)?.next().is_some() {
            bail!(
                "{} exists and is not empty; remove it or pass another --prom-out",
                out.display()
            );
        }
        let f = fs::File::create(&om_path).with_context(|| format!("creating {}", om_path.display()))?;
        let (_, om_bytes) = openmetrics::write_dataset(&ds, BufWriter::with_capacity(8 << 20, f), feed)?;
        err?;
        let write_s = t1.elapsed().as_secs_f64();
        println!(
            "wrote {} ({:.2} GB) in {write_s:.1}s (generation + metricsd/XOR encoding {:.1}s of it)",
            om_path.display(),
            om_bytes as f64 / 1e9,
            ours.time.as_secs_f64()
        );

        let t2 = Instant::now();
        let output = Command::new(&a.promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om_path)
            .arg(&out)
            .output()
            .with_context(|| format!("running {}", a.promtool))?;
        let promtool_s = t2.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!(
                "promtool failed ({}):\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let blocks = measure_blocks(&out)?;
        println!(
            "promtool ran {promtool_s:.1}s, wrote {} block(s) into {}",
            blocks.blocks,
            out.display()
        );
        if blocks.samples != ds.num_samples() || blocks.series != ds.num_series() as u64 {
            bail!(
                "promtool stored {} samples / {} series, the data set has {} / {} \
                 (promtool drops out-of-order samples silently)",
                blocks.samples,
                blocks.series,
                ds.num_samples(),
                ds.num_series()
            );
        }
        let version = Command::new(&a.promtool)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        let s = blocks.samples as f64;
        let j = json!({
            "promtool": version,
            "promtool_seconds": promtool_s,
            "openmetrics_bytes": om_bytes,
            "openmetrics_write_seconds": write_s,
            "blocks": blocks.blocks,
            "series": blocks.series,
            "samples": blocks.samples,
            "chunks": blocks.chunks,
            "chunks_bytes": blocks.chunks_bytes,
            "index_bytes": blocks.index_bytes,
            "other_bytes": blocks.other_bytes,
            "total_bytes": blocks.total(),
            "chunks_bytes_per_sample": blocks.chunks_bytes as f64 / s,
            "index_bytes_per_sample": blocks.index_bytes as f64 / s,
            "total_bytes_per_sample": blocks.total() as f64 / s,
        });
        prom = Some((blocks, j));
        if !a.keep {
            fs::remove_file(&om_path)?;
            fs::remove_dir_all(&out)?;
        }
    }

    // ---- Report.
    let n = ds.num_samples() as f64;
    let line = |name: &str, bytes: u64, vs: Option<(u64, u64)>| {
        let bps = bytes as f64 / n;
        match vs {
            Some((pc, pt)) => println!(
                "{name:<40} {bytes:>14} {bps:>9.3} {:>9.3} {:>9.3}",
                bytes as f64 / pc as f64,
                bytes as f64 / pt as f64
            ),
            None => println!("{name:<40} {bytes:>14} {bps:>9.3}"),
        }
    };
    println!();
    println!(
        "{:<40} {:>14} {:>9} {:>9} {:>9}",
        "", "bytes", "B/sample", "/P.chunk", "/P.total"
    );
    let vs = prom.as_ref().map(|(b, _)| (b.chunks_bytes, b.total()));
    if let Some((b, _)) = &prom {
        line("Prometheus chunks", b.chunks_bytes, None);
        line("Prometheus index", b.index_bytes, None);
        line("Prometheus total (chunks+index+meta)", b.total(), None);
    }
    line(
        &format!("XOR payload ({}/chunk)", xor.chunk_samples),
        xor.payload_bytes,
        vs,
    );
    line("XOR + Prometheus chunk framing", xor.framed_bytes, vs);
    line(
        &format!("metricsd chunks (encode_best ≤{})", ours.chunk_samples),
        ours.bytes(),
        vs,
    );
    println!(
        "metricsd chunks: {} ({} XOR, {} Pco); encode time {:.1}s",
        ours.chunks,
        ours.chunks_xor,
        ours.chunks_pco,
        ours.time.as_secs_f64()
    );

    // ---- metricsd: a real persisted block (chunks + index + meta.json on disk), written by
    // the store's own block writer, measured like the Prometheus blocks.
    let t3 = Instant::now();
    let bdir = work.join(format!("{shape}.metricsd"));
    if bdir.exists() {
        fs::remove_dir_all(&bdir)?;
    }
    fs::create_dir_all(&bdir)?;
    let mut order: Vec<usize> = (0..ds.num_series()).collect();
    order.sort_by(|&x, &y| ds.series[x].cmp(&ds.series[y]));
    let span = cfg.samples_per_series as i64 * cfg.interval_ms;
    let (bmin, bmax) = (cfg.start_ms - 60_000, cfg.start_ms + span + 60_000);
    let meta = metricsd_tsdb::block::write_block(
        &bdir,
        bmin,
        bmax,
        order.iter().map(|&i| (ds.series[i].clone(), ds.samples(i))),
        metricsd_tsdb::block::CompactionMeta {
            level: 1,
            ..Default::default()
        },
    )?;
    let block_path = bdir.join(&meta.ulid);
    let block_bytes = dir_bytes(&block_path)?;
    let index_bytes = fs::metadata(block_path.join("index"))?.len();
    let write_block_s = t3.elapsed().as_secs_f64();
    ensure!(
        meta.stats.num_samples == ds.num_samples(),
        "block holds {} samples",
        meta.stats.num_samples
    );
    line("metricsd block total (chunks+index+meta)", block_bytes, vs);
    line("metricsd block index", index_bytes, None);
    println!(
        "metricsd block written in {write_block_s:.1}s ({} chunks)",
        meta.stats.num_chunks
    );
    if !a.keep {
        fs::remove_dir_all(&bdir)?;
    }

    if let Some(path) = &a.json {
        let fams: usize = ds.families.len();
        let j = json!({
            "date_unix": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "dataset": {
                "hosts": ds.num_hosts(),
                "families": fams,
                "series": ds.num_series(),
                "samples_per_series": cfg.samples_per_series,
                "samples": ds.num_samples(),
                "start_ms": cfg.start_ms,
                "interval_ms": cfg.interval_ms,
                "jitter_ms": cfg.jitter_ms,
                "profile": format!("{:?}", cfg.profile).to_lowercase(),
                "seed": cfg.seed,
                "reboot_prob": cfg.reboot_prob,
                "shape_seconds": gen_shape_s,
            },
            "prometheus": prom.as_ref().map(|(_, j)| j.clone()),
            "xor": xor.report(),
            "metricsd": ours.report(),
            "metricsd_block": json!({
                "bytes": block_bytes,
                "index_bytes": index_bytes,
                "chunks": meta.stats.num_chunks,
                "bytes_per_sample": block_bytes as f64 / n,
                "write_seconds": write_block_s,
            }),
            "ratios": prom.as_ref().map(|(b, _)| json!({
                "metricsd_vs_prometheus_chunks": ours.bytes() as f64 / b.chunks_bytes as f64,
                "metricsd_vs_prometheus_total": ours.bytes() as f64 / b.total() as f64,
                "metricsd_block_vs_prometheus_total": block_bytes as f64 / b.total() as f64,
                "xor_framed_vs_prometheus_chunks": xor.framed_bytes as f64 / b.chunks_bytes as f64,
            })),
        });
        fs::write(path, serde_json::to_string_pretty(&j)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
