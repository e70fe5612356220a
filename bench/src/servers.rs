//! Starting the servers the harnesses compare: Prometheus, VictoriaMetrics and metricsd.
//!
//! [`Server::start`] runs one on `127.0.0.1:PORT` with its data under a given directory, its
//! output in `DIR/server.log`, and waits until it answers its readiness endpoint (Prometheus
//! `/-/ready`, the others `/health`). A [`Server`] is killed when dropped, unless
//! [`Server::detach`]ed (the harnesses' `--keep`). Also here: the `/proc` readings the
//! harnesses report (CPU ticks, VmRSS/VmHWM) and a free-port finder.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Kind {
    /// VictoriaMetrics single-node (`-httpListenAddr`, `-storageDataPath`).
    #[value(name = "vm")]
    VictoriaMetrics,
    /// Prometheus 2.x with its remote_write receiver on.
    Prometheus,
    /// `metricsd serve`.
    Metricsd,
}

impl Kind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::VictoriaMetrics => "VictoriaMetrics",
            Kind::Prometheus => "Prometheus",
            Kind::Metricsd => "metricsd",
        }
    }

    /// The path that answers 200 once the server accepts writes and queries.
    pub fn ready_path(self) -> &'static str {
        match self {
            Kind::Prometheus => "/-/ready",
            _ => "/health",
        }
    }
}

/// The servers' binaries: the flags every harness shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Bins {
    /// Prometheus binary (2.x, with --web.enable-remote-write-receiver).
    #[arg(long, default_value = "/usr/bin/prometheus")]
    pub prometheus_bin: PathBuf,
    /// VictoriaMetrics single-node binary.
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    pub vm_bin: PathBuf,
    /// metricsd binary (`metricsd serve --listen ADDR --data-dir DIR`).
    #[arg(long, default_value = "target/release/metricsd")]
    pub metricsd_bin: PathBuf,
}

impl Bins {
    /// The binary of `kind`.
    pub fn of(&self, kind: Kind) -> PathBuf {
        match kind {
            Kind::Prometheus => self.prometheus_bin.clone(),
            Kind::VictoriaMetrics => self.vm_bin.clone(),
            Kind::Metricsd => self.metricsd_bin.clone(),
        }
    }
}

/// How to start a server: binary and extra arguments (after the harness' own).
#[derive(Debug, Clone)]
pub struct Spec {
    /// Which server.
    pub kind: Kind,
    /// Its binary.
    pub bin: PathBuf,
    /// Extra arguments, appended.
    pub args: Vec<String>,
}

/// A running server; killed on drop unless detached.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Which server.
    pub kind: Kind,
    /// Its loopback port.
    pub port: u16,
    /// Its combined stdout and stderr.
    pub log: PathBuf,
}

impl Server {
    /// Starts `spec` on `127.0.0.1:port` with its data in `dir/data` (created) and waits up to
    /// `ready_timeout` until it is ready.
    pub fn start(spec: &Spec, port: u16, dir: &Path, ready_timeout: Duration) -> Result<Server> {
        let data = dir.join("data");
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&spec.bin);
        match spec.kind {
            Kind::VictoriaMetrics => {
                cmd.arg(format!("-storageDataPath={}", data.display()))
                    .arg(format!("-httpListenAddr={addr}"))
                    // Samples are queryable as soon as they are flushed (default: 30 s later).
                    .arg("-search.latencyOffset=0s");
            }
            Kind::Prometheus => {
                let cfg = dir.join("prometheus.yml");
                fs::write(&cfg, "global:\n  scrape_interval: 15s\nscrape_configs: []\n")?;
                cmd.arg(format!("--config.file={}", cfg.display()))
                    .arg(format!("--storage.tsdb.path={}", data.display()))
                    .arg(format!("--web.listen-address={addr}"))
                    .arg("--web.enable-remote-write-receiver");
            }
            Kind::Metricsd => {
                cmd.args(["serve", "--listen", &addr, "--data-dir"]).arg(&data);
            }
        }
        cmd.args(&spec.args);
        let log = dir.join("server.log");
        let out = fs::File::create(&log)?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.kind.name(), spec.bin.display()))?;
        let mut srv = Server {
            child: Some(child),
            kind: spec.kind,
            port,
            log,
        };
        let agent = crate::http_agent(Duration::from_secs(5));
        let t0 = Instant::now();
        loop {
            if let Some(Ok(Some(st))) = srv.child.as_mut().map(|c| c.try_wait()) {
                bail!(
                    "{} exited during start-up ({st}):\n{}",
                    spec.kind.name(),
                    srv.log_tail()
                );
            }
            if let Ok(r) = agent.get(srv.url(spec.kind.ready_path())).call()
                && r.status() == 200
            {
                return Ok(srv);
            }
            if t0.elapsed() > ready_timeout {
                bail!(
                    "{} not ready after {:?}:\n{}",
                    spec.kind.name(),
                    ready_timeout,
                    srv.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The last 15 lines of its output.
    pub fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 20 s.
    pub fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Leaves the server running (for debugging); returns its pid.
    pub fn detach(mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free loopback port: the first bindable one from `from` on, or an ephemeral one the
/// kernel picks when `from` is 0. (The port is free when checked; another process could take
/// it before the server binds it, in which case the server fails to start.)
pub fn free_port(from: u16) -> Result<u16> {
    if from == 0 {
        let l = TcpListener::bind(("127.0.0.1", 0)).context("binding 127.0.0.1:0")?;
        return Ok(l.local_addr()?.port());
    }
    (from..from.saturating_add(200))
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .context("no free loopback port")
}

/// Whether `bin` exists and has a `serve` subcommand (`bin serve --help` succeeds).
pub fn metricsd_usable(bin: &Path) -> Result<(), String> {
    if !bin.exists() {
        return Err(format!("{} not found", bin.display()));
    }
    match Command::new(bin)
        .args(["serve", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "`{} serve --help` exited with {s}: no serve command yet",
            bin.display()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", bin.display())),
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = s
        .get(s.rfind(')').context("malformed stat")? + 2..)
        .context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    ensure_len(&f, 13)?;
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn ensure_len(f: &[&str], n: usize) -> Result<()> {
    if f.len() < n {
        bail!("/proc stat has {} fields after the name, want {n}", f.len());
    }
    Ok(())
}

/// A `/proc/<pid>/status` field in kB (VmRSS, VmHWM).
pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix(field).and_then(|v| v.strip_prefix(':')) {
            return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}

/// Resets `pid`'s VmHWM to its current RSS (`echo 5 > /proc/PID/clear_refs`), so a later
/// VmHWM is the peak since now. Fails for another user's process or old kernels.
pub fn reset_hwm(pid: u32) -> Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("resetting VmHWM of {pid}"))
}

/// The 1/5/15-minute load averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Bytes `dir` occupies on disk: the allocated blocks (`st_blocks` × 512) of every file
/// under it, as `du` counts them, so preallocated or sparse files count what they hold.
pub fn disk_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            // A directory removed meanwhile (a compaction's temporary) holds nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", d.display())),
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    Ok(total)
}
