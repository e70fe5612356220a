//! Every setting of `metricsd serve`, declared once.
//!
//! The table at the bottom of this file is the only place a setting is written. From it
//! come the field of [`Config`] (its YAML key), the default, the environment variable
//! (`ACCESS_` and the key in capitals), the flag (`--` and the key with dashes, built by the
//! binary from [`SETTINGS`]; clap is not a dependency of this crate), and the row of
//! `docs/configuration.md`, which a test regenerates and compares (run it with
//! `METRICSD_BLESS=1` to rewrite the table). The doc comment of each entry is the row's
//! meaning, the flag's help and the field's rustdoc.
//!
//! Checks of ranges and of combinations stay in [`Config::validate`], where one check can
//! see several settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AggregationSection, AggregationType, CollectionSection, Fsync, NamingPolicy, PromDuration};

/// A type a setting can have: how its environment variable or flag is read, and written
/// back (for the documented default and `--check-config`).
pub trait SettingValue: Sized {
    /// What the value looks like, in `--help` (`N`, `DURATION`, ...).
    const VALUE_NAME: &'static str;
    /// A flag of this type may be given without a value, meaning `true`.
    const SWITCH: bool = false;
    /// Reads the text of an environment variable or flag; the error says what is wrong.
    fn parse_text(text: &str) -> Result<Self, String>;
    /// The value as that text: `parse_text(&v.render())` gives `v` back.
    fn render(&self) -> String;
}

macro_rules! integer_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            const VALUE_NAME: &'static str = "N";
            fn parse_text(text: &str) -> Result<Self, String> {
                text.parse().map_err(|_| format!("{text:?} is not a non-negative integer"))
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_setting!(u64, usize);

impl SettingValue for bool {
    const VALUE_NAME: &'static str = "BOOL";
    const SWITCH: bool = true;
    fn parse_text(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(format!("{text:?} is not a boolean (true/false)")),
        }
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    const VALUE_NAME: &'static str = "TEXT";
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn render(&self) -> String {
        self.clone()
    }
}

impl SettingValue for PathBuf {
    const VALUE_NAME: &'static str = "PATH";
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn render(&self) -> String {
        self.display().to_string()
    }
}

impl SettingValue for SocketAddr {
    const VALUE_NAME: &'static str = "ADDR";
    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|_| format!("{text:?} is not a socket address like 0.0.0.0:8012"))
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for PromDuration {
    const VALUE_NAME: &'static str = "DURATION";
    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for NamingPolicy {
    const VALUE_NAME: &'static str = "off|warn|enforce";
    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn render(&self) -> String {
        match self {
            NamingPolicy::Off => "off",
            NamingPolicy::Warn => "warn",
            NamingPolicy::Enforce => "enforce",
        }
        .to_owned()
    }
}

impl SettingValue for Fsync {
    const VALUE_NAME: &'static str = "always|interval|never";
    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn render(&self) -> String {
        match self {
            Fsync::Always => "always",
            Fsync::Interval => "interval",
            Fsync::Never => "never",
        }
        .to_owned()
    }
}

/// Comma-separated: `avg,sum,min,max`.
impl SettingValue for Vec<AggregationType> {
    const VALUE_NAME: &'static str = "LIST";
    fn parse_text(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect()
    }
    fn render(&self) -> String {
        self.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// One row of the table: what the binary needs to build a flag, and the docs a row.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The YAML key and field name.
    pub key: &'static str,
    /// The doc comment, one line per source line.
    pub doc: &'static str,
    /// What the value looks like ([`SettingValue::VALUE_NAME`]).
    pub value_name: &'static str,
    /// The flag may be given without a value ([`SettingValue::SWITCH`]).
    pub switch: bool,
}

impl Setting {
    /// The environment variable: `ACCESS_` and the key in capitals.
    pub fn env_var(&self) -> String {
        format!("ACCESS_{}", self.key.to_ascii_uppercase())
    }

    /// The flag without its leading dashes: the key with dashes.
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }

    /// The doc comment as one paragraph.
    pub fn meaning(&self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The meaning's first sentence (the flag's short help).
    pub fn summary(&self) -> String {
        let m = self.meaning();
        match m.find(". ") {
            Some(i) => m[..=i].to_owned(),
            None => m,
        }
    }

    /// The setting of that YAML key.
    pub fn find(key: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|s| s.key == key)
    }
}

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $key:ident : $ty:ty = $default:expr ; )*) => {
        /// The service's settings. Field names are the YAML keys; see the table in
        /// `config/settings.rs`, the one place they are declared.
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $key: $ty, )*
            /// Seed 000's "Collection Configuration", as the YAML section `collection:`; folded
            /// into the settings above when the file is read (see [`CollectionSection`]).
            #[serde(skip_serializing)]
            pub collection: Option<CollectionSection>,
            /// Seed 000's "Aggregation Configuration", as the YAML section `aggregation:`.
            #[serde(skip_serializing)]
            pub aggregation: Option<AggregationSection>,
            /// Settings given that have no effect in metricsd (logged as a warning at start).
            #[serde(skip)]
            pub inert: Vec<String>,
            /// `ACCESS_*` environment variables that name no setting (logged as a warning at
            /// start; see [`Config::note_unknown_env_vars`]).
            #[serde(skip)]
            pub unknown_env_vars: Vec<String>,
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $( $key: $default, )*
                    collection: None,
                    aggregation: None,
                    inert: Vec::new(),
                    unknown_env_vars: Vec::new(),
                }
            }
        }

        /// Every setting, in the order of the documentation.
        pub const SETTINGS: &[Setting] = &[
            $( Setting {
                key: stringify!($key),
                doc: concat!($($doc, "\n",)* ""),
                value_name: <$ty as SettingValue>::VALUE_NAME,
                switch: <$ty as SettingValue>::SWITCH,
            }, )*
        ];

        impl Config {
            /// Sets the setting `key` from the text of its environment variable or flag.
            /// `Ok(false)`: no setting has that key.
            pub(super) fn set_text(&mut self, key: &str, text: &str) -> Result<bool, String> {
                match key {
                    $( stringify!($key) => self.$key = SettingValue::parse_text(text)?, )*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// The value of the setting `key` as its environment variable would give it.
            pub fn render(&self, key: &str) -> Option<String> {
                match key {
                    $( stringify!($key) => Some(SettingValue::render(&self.$key)), )*
                    _ => None,
                }
            }
        }
    };
}

settings! {
    /// Listen address; `127.0.0.1:0` picks a free port (logged as `addr` in the `listening` line).
    listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 8012));
    /// Store directory (`tenants/<id>/` per tenant, `server/metadata/` for metric types and help).
    data_dir: PathBuf = PathBuf::from("./data");
    /// Environment name, logged as `env` on every line.
    env: String = "local".into();
    /// trace, debug, info, warn, error.
    log_level: String = "info".into();
    /// The externally advertised URL (logged at start).
    metrics_endpoint: String = "http://localhost:8012".into();
    /// Most series per tenant (0 = no limit). New series beyond it are rejected per item and
    /// counted in `dropped_points`.
    max_metric_series: usize = 10_000;
    /// Most recent points per series returned by `/metrics/series`.
    max_points_per_series: usize = 1000;
    /// Window of `/metrics?aggregated=true` (1 s – 7 days).
    aggregation_window_seconds: u64 = 300;
    /// The families of `/metrics?aggregated=true`: `<family>_avg`, `_sum`, `_min`, `_max` (see
    /// `docs/api.md`, Exports); at least one. Comma-separated in the environment variable
    /// and the flag (`avg,sum`).
    aggregation_types: Vec<AggregationType> = AggregationType::ALL.to_vec();
    /// Hours of `/metrics/trends/{name}` when the request gives no `hours` (1 – 744).
    trend_hours: u64 = 24;
    /// Export our request spans over OTLP/HTTP (protobuf) to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else `http://localhost:4318/v1/traces`
    /// (plain HTTP; the standard `OTEL_EXPORTER_OTLP_TIMEOUT`, `_HEADERS` and `OTEL_BSP_*` apply).
    /// Spans continue the caller's W3C `traceparent` and carry `service.name=metricsd`; a collector
    /// that is down never slows or fails a request (bounded queue, own export thread). `trace_id`
    /// is logged regardless.
    enable_tracing: bool = false;
    /// `off`, `warn` (log), `enforce` (400 naming `name`): `_total` on counters and only on
    /// counters; base units (`_seconds`, `_bytes`, `_ratio`) instead of `_ms`, `_milliseconds`,
    /// `_kb`, `_mb`, `_percent`, ...
    naming_policy: NamingPolicy = NamingPolicy::Off;
    /// Largest request body (413 beyond), counted **after** `Content-Encoding: gzip`/`deflate`
    /// decompression, so a gzip bomb is a 413. remote_write's snappy payload may decompress to 8×
    /// this.
    max_body_bytes: usize = 10 << 20;
    /// Most requests in flight (1 – 1000000). Beyond it requests are refused at once with **503**
    /// and `Retry-After: 1` (code `overloaded`), not queued; `/health` is exempt. 503 rather than
    /// 429 because the limit is the server's capacity, not one client's rate, and because
    /// Prometheus' remote_write retries 5xx but drops 429 unless `retry_on_http_429` is set.
    max_concurrent_requests: usize = 256;
    /// A request not answered within this after its body arrived gets **503** with `Retry-After: 1`
    /// (code `timeout`), 1 – 86400. Store work already started may still complete. PromQL queries
    /// (`/api/v1/query`, `/api/v1/query_range`) run up to `query_timeout_seconds` instead when that
    /// is longer.
    request_timeout_seconds: u64 = 60;
    /// A connection that does not deliver a request's headers within this is closed (slowloris).
    /// Also closes keep-alive connections idle that long. 1 – 3600.
    header_read_timeout_seconds: u64 = 30;
    /// A request body must arrive completely within this, else **408** (code `body_timeout`).
    /// Bodies are read before a request takes one of the `max_concurrent_requests` slots, so a slow
    /// upload holds only its own connection.
    body_read_timeout_seconds: u64 = 30;
    /// After 2 s of grace, a body must arrive at least this fast on average, else **408** (code
    /// `body_timeout`); 0 = no minimum. A client trickling a byte every few seconds is cut off
    /// after about 2 s instead of holding its connection for the whole `body_read_timeout_seconds`.
    body_min_bytes_per_second: u64 = 1024;
    /// Most open client connections (at least 2). At the cap the server stops accepting until one
    /// closes; new clients wait in the kernel's listen backlog (Prometheus'
    /// `--web.max-connections`). Idle keep-alive connections are closed after
    /// `header_read_timeout_seconds`, so the cap bounds file descriptors and per-connection memory,
    /// not throughput.
    max_connections: usize = 1024;
    /// Most open connections from one client address (0 = no limit). A connection beyond it is
    /// closed at once, so one client that opens connections and trickles (slowloris) holds at most
    /// its share of `max_connections`, not all of them. Behind a reverse proxy every client has the
    /// proxy's address: raise it or set 0 there.
    max_connections_per_client: usize = 512;
    /// The track-API collector keeps per-series state (counter totals, histogram buckets, summary
    /// windows) in memory only for series tracked within this time; an evicted series is reloaded
    /// from the store on its next item, as after a restart (a counter continues from its stored
    /// total). 1 h: longer than the summary window, so an evicted summary loses no observation
    /// still in its window, and long enough that a series reporting every few minutes costs no
    /// store lookups; shorter bounds memory tighter.
    series_idle_timeout_seconds: u64 = 3600;
    /// Most items in one `/metrics/track/batch` (413 beyond).
    max_batch_items: usize = 10_000;
    /// Labels per series, `__name__` included.
    max_label_names_per_series: usize = 64;
    /// Bytes per label name.
    max_label_name_length: usize = 1024;
    /// Bytes per label value.
    max_label_value_length: usize = 4096;
    /// Blocks older than this are deleted by maintenance (0 keeps everything). Measured back from
    /// the tenant's newest sample, but never from later than the server's clock: historical data
    /// keeps its relative retention, and no sample stamped in the future can make the store delete
    /// data younger than this by the clock. The default, 360, is 15 days.
    retention_hours: u64 = 15 * 24;
    /// Samples stamped later than the server's clock plus this are rejected with a 400 naming this
    /// setting, on every write path (JSON track API, remote_write, imports). As Mimir's
    /// `creation_grace_period`: it allows for senders' clock skew, and keeps one sample at `t =
    /// i64::MAX` or in the year 2999 from disturbing the store. 0 – 31622400 (366 days); 0 rejects
    /// anything after the clock. Timestamps before -2^62 ms (about 146 million years before 1970)
    /// are rejected too (400, "too old"). The default is 10 minutes.
    creation_grace_period_seconds: u64 = 600;
    /// Most tenants (0 = no limit). A write that would create a tenant beyond it is refused with
    /// **429** naming `max_tenants` (code `limit_exceeded`); tenants that exist keep working. Every
    /// tenant costs a directory, a WAL and a head, so an unbounded number of `X-Scope-OrgID`s would
    /// be an unbounded number of files and memory. Only an accepted write leaves a tenant behind:
    /// reads of an unknown tenant and remote_write requests without samples (metadata only) create
    /// nothing, and a tenant created for a write whose every sample was refused is removed again.
    /// Tenants on disk at start count, even beyond the limit.
    max_tenants: usize = 1000;
    /// A tenant nobody read or wrote for this long is closed by the maintenance pass: its WAL
    /// flushed and fsynced, its files closed, its head's memory released. The next read or write
    /// opens it again, replaying its WAL as a restart does (that request waits for it). A closed
    /// tenant is not compacted, so its retention applies after it is next opened. 0 keeps every
    /// tenant open. All tenants' WALs are fsynced by one thread. The default is 15 minutes.
    tenant_idle_close_seconds: u64 = 900;
    /// Seconds between maintenance passes (head cut, compaction, retention), 1 – 86400.
    compaction_interval_seconds: u64 = 60;
    /// WAL fsync: `always` (before every acknowledgement), `interval` (every second; a process
    /// crash loses nothing acknowledged, a power loss up to ~1 s), `never`.
    fsync: Fsync = Fsync::Interval;
    /// `/metrics` exports the newest sample of each series written within this window.
    export_lookback_seconds: u64 = 3600;
    /// Summaries compute quantiles over the observations of the last 10 minutes ...
    summary_window_seconds: u64 = 600;
    /// ... and at most the newest 1000 of them.
    summary_max_observations: usize = 1000;
    /// How far back a PromQL instant selector (and `/federate`) looks for a sample (Prometheus'
    /// `--query.lookback-delta`). A duration (`5m`, `1h30m`) or seconds.
    query_lookback_delta: PromDuration = PromDuration(Duration::from_secs(300));
    /// Longest a PromQL query runs (503 `timeout` beyond, in Prometheus' error shape), 1 – 86400,
    /// even when longer than `request_timeout_seconds` (on `/api/v1/query`, `/api/v1/query_range`
    /// and seed 001's `/metrics/query`, `/metrics/instant`, `/metrics/range`); a request's
    /// `timeout=` can only shorten it.
    query_timeout_seconds: u64 = 120;
    /// Most points a query holds in memory at once (422 `execution` beyond).
    query_max_samples: u64 = 50_000_000;
    /// Most steps of a range query ((end − start) / step; 400 beyond). Unrelated to
    /// `max_points_per_series`, which bounds `/metrics/series`.
    query_max_points_per_series: u64 = 11_000;
    /// Serve `/api/v1/admin/tsdb/delete_series`; off, it answers Prometheus' `admin APIs disabled`.
    enable_admin_api: bool = false;

}
