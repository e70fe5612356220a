//! Starting and stopping the binary; small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `metricsd serve`; killed on drop.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub client: reqwest::blocking::Client,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts on `dir` with extra environment and flags, waits for `/health`.
    pub fn start_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metricsd"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn metricsd");
        let out = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let logs2 = logs.clone();
        std::thread::spawn(move || {
            // Keep draining stdout so the server never blocks on a full pipe.
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
                logs2.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server logs `listening` with its addr");
        let s = Server {
            child: Some(child),
            base: format!("http://{addr}"),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = s.client.get(s.url("/health")).send()
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "/health did not answer 200");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[], &[])
    }

    /// POSTs a remote_write 1.0 body (snappy protobuf) with extra `headers` (a
    /// `Content-Type` among them replaces the default); (status, body text).
    pub fn remote_write(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
        let mut r = self
            .client
            .post(self.url("/api/v1/write"))
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(body);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            r = r.header("content-type", "application/x-protobuf");
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().expect("POST /api/v1/write");
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    /// The server process' id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`, ...).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::blocking::Body>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut rq = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        let r = rq.send().expect("POST");
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn track(&self, body: &Value) -> (u16, Value) {
        self.post("/metrics/track", body.to_string(), &[])
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().expect("GET");
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    /// GET with extra headers (a tenant's `X-Scope-OrgID`, say).
    pub fn get_with_headers(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut rq = self.client.get(self.url(path));
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        let r = rq.send().expect("GET");
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    pub fn get_json(&self, path: &str) -> Value {
        let (s, t) = self.get(path);
        assert_eq!(s, 200, "GET {path}: {t}");
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("GET {path}: {e}: {t}"))
    }

    pub fn healthy(&self) -> bool {
        self.get_json("/health")["status"] == "ok"
    }

    /// SIGTERM; waits and returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// The value of the exposition line starting with `prefix` (name and labels).
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The first executable file named `bin` in `PATH`.
pub fn find_on_path(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// Debian's `prometheus`, the peer of the interoperability and conformance tests. Without
/// it the test is skipped, except under `CI=true`, where `.ci/run` installs it and its
/// absence is a failure.
pub fn prometheus_or_skip() -> Option<std::path::PathBuf> {
    let bin = find_on_path("prometheus");
    if bin.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but no prometheus binary: .ci/run must install it"
        );
        eprintln!("skipped: no prometheus binary");
    }
    bin
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a=1&b=2` from pairs, encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A remote_write series: `labels` (name, value pairs, in the order sent) and `samples`
/// (ms, value).
pub fn time_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> metricsd_ingest::TimeSeries {
    metricsd_ingest::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| metricsd_ingest::Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| metricsd_ingest::Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

/// A remote_write 1.0 body (snappy-compressed protobuf) of `series`, no metadata.
pub fn write_body(series: Vec<metricsd_ingest::TimeSeries>) -> Vec<u8> {
    metricsd_ingest::encode_write_request(&metricsd_ingest::WriteRequest {
        timeseries: series,
        metadata: vec![],
    })
}
