//! Configuration: embedded defaults, then an optional YAML file, then `ACCESS_*`
//! environment variables, then command-line flags (each layer overrides the previous).
//! See `docs/configuration.md` for the table of settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::aggregate::AggregationType;

/// What the naming policy does with a name that breaks the conventions of seed 002
/// (`_total` on counters, base-unit suffixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamingPolicy {
    /// No checks.
    Off,
    /// Accept, log a warning and count it in `metrics_naming_violations_total`.
    Warn,
    /// Reject the item with a 400 naming the `name` field.
    Enforce,
}

impl std::str::FromStr for NamingPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(NamingPolicy::Off),
            "warn" => Ok(NamingPolicy::Warn),
            "enforce" => Ok(NamingPolicy::Enforce),
            _ => Err(format!("{s:?} is not one of off, warn, enforce")),
        }
    }
}

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Before every acknowledgement (survives power loss, slowest).
    Always,
    /// Once a second in the background (a process crash loses nothing acknowledged).
    Interval,
    /// Only when segments are cut and at shutdown.
    Never,
}

impl std::str::FromStr for Fsync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Fsync::Always),
            "interval" => Ok(Fsync::Interval),
            "never" => Ok(Fsync::Never),
            _ => Err(format!("{s:?} is not one of always, interval, never")),
        }
    }
}

/// A duration written the Prometheus way (`5m`, `1h30m`, `90s`) or as a number of seconds;
/// rendered back in Prometheus' canonical form (`5m`, `15d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    /// The duration in milliseconds.
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl std::str::FromStr for PromDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::time::parse_duration_ms(s)
            .filter(|ms| *ms > 0)
            .map(|ms| PromDuration(Duration::from_millis(ms as u64)))
            .ok_or_else(|| format!("{s:?} is not a positive duration like 5m, 1h30m or 90 (seconds)"))
    }
}

impl std::fmt::Display for PromDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::time::format_duration_ms(self.as_millis()))
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(PromDuration(Duration::from_secs(s))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for PromDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The service's settings. Field names are the YAML keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where the store keeps its data.
    pub data_dir: PathBuf,
    /// Environment name, logged with every line (`ACCESS_ENV`).
    pub env: String,
    /// Log level: trace, debug, info, warn, error (`ACCESS_LOG_LEVEL`).
    pub log_level: String,
    /// The externally advertised URL of this service (`ACCESS_METRICS_ENDPOINT`).
    pub metrics_endpoint: String,
    /// Most series per tenant; new series beyond it are rejected per item (`ACCESS_MAX_METRIC_SERIES`; 0 = no limit).
    pub max_metric_series: usize,
    /// Most recent points returned per series by `/metrics/series` (`ACCESS_MAX_POINTS_PER_SERIES`).
    pub max_points_per_series: usize,
    /// Window of `aggregated=true` exports, in seconds (`ACCESS_AGGREGATION_WINDOW_SECONDS`).
    pub aggregation_window_seconds: u64,
    /// Export our request spans over OTLP/HTTP (`ACCESS_ENABLE_TRACING`; see `otel`).
    pub enable_tracing: bool,
    /// Largest accepted request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most items in one `/metrics/track/batch` request.
    pub max_batch_items: usize,
    /// Most labels per series, `__name__` included.
    pub max_label_names_per_series: usize,
    /// Longest label name in bytes.
    pub max_label_name_length: usize,
    /// Longest label value in bytes.
    pub max_label_value_length: usize,
    /// Naming policy for tracked metric names.
    pub naming_policy: NamingPolicy,
    /// Data older than this many hours is deleted by maintenance (0 keeps everything).
    pub retention_hours: u64,
    /// WAL fsync policy.
    pub fsync: Fsync,
    /// `/metrics` exports the newest sample of each series written within this many seconds.
    pub export_lookback_seconds: u64,
    /// Summaries compute quantiles over the observations of this many seconds ...
    pub summary_window_seconds: u64,
    /// ... and at most this many of the newest observations.
    pub summary_max_observations: usize,
    /// How far back a PromQL instant selector looks for a sample (Prometheus'
    /// `--query.lookback-delta`; `/federate` uses it too).
    pub query_lookback_delta: PromDuration,
    /// Longest a PromQL query may run (Prometheus' `--query.timeout`); a request's
    /// `timeout=` can only shorten it. It holds even when longer than
    /// `request_timeout_seconds`, which does not cut queries short.
    pub query_timeout_seconds: u64,
    /// Most samples a PromQL query may hold in memory at once (`--query.max-samples`).
    pub query_max_samples: u64,
    /// Most points per series of a range query (Prometheus' 11,000).
    pub query_max_points_per_series: u64,
    /// Whether `/api/v1/admin/*` (series deletion) is served.
    pub enable_admin_api: bool,
    /// Most requests in flight; beyond it requests are answered 503 with `Retry-After`
    /// (`ACCESS_MAX_CONCURRENT_REQUESTS`). `/health` is exempt.
    pub max_concurrent_requests: usize,
    /// A request not answered within this many seconds gets a 503 (`ACCESS_REQUEST_TIMEOUT_SECONDS`);
    /// PromQL queries run up to `query_timeout_seconds` instead, when that is longer.
    pub request_timeout_seconds: u64,
    /// A connection that does not deliver a request's headers within this many seconds is
    /// closed (`ACCESS_HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout_seconds: u64,
    /// A request body must arrive completely within this many seconds, else 408
    /// (`ACCESS_BODY_READ_TIMEOUT_SECONDS`). It is read before the request takes one of the
    /// `max_concurrent_requests` slots; bodies share a budget of `max_concurrent_requests ×
    /// max_body_bytes` bytes (503 beyond).
    pub body_read_timeout_seconds: u64,
    /// After a 2 s grace, a body must arrive at least this fast on average, else 408
    /// (`ACCESS_BODY_MIN_BYTES_PER_SECOND`; 0 = no minimum).
    pub body_min_bytes_per_second: u64,
    /// Most open client connections; further ones wait in the listen backlog until one
    /// closes, as Prometheus' `--web.max-connections` (`ACCESS_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Most open connections from one client address; a connection beyond it is closed at
    /// once (`ACCESS_MAX_CONNECTIONS_PER_CLIENT`; 0 = no limit, e.g. behind a proxy).
    pub max_connections_per_client: usize,
    /// The track-API collector forgets series not tracked for this many seconds; they are
    /// reloaded from the store on next use (`ACCESS_SERIES_IDLE_TIMEOUT_SECONDS`).
    pub series_idle_timeout_seconds: u64,
    /// The families of `aggregated=true` exports: `<family>_avg`, `_sum`, `_min`, `_max`
    /// (`ACCESS_AGGREGATION_TYPES`, comma-separated).
    pub aggregation_types: Vec<AggregationType>,
    /// Hours of `/metrics/trends` when the request gives no `hours` (`ACCESS_TREND_HOURS`).
    pub trend_hours: u64,
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
    /// Samples stamped more than this many seconds after the server's clock are rejected
    /// with a 400 (Mimir's `creation_grace_period`; `ACCESS_CREATION_GRACE_PERIOD_SECONDS`).
    pub creation_grace_period_seconds: u64,
    /// Seconds between maintenance passes: head cut, compaction, retention
    /// (`ACCESS_COMPACTION_INTERVAL_SECONDS`).
    pub compaction_interval_seconds: u64,
    /// Most tenants; a write for a new tenant beyond it gets a 429 (`ACCESS_MAX_TENANTS`;
    /// 0 = no limit).
    pub max_tenants: usize,
    /// A tenant unused for this many seconds is closed: files closed, memory released,
    /// reopened on next use (`ACCESS_TENANT_IDLE_CLOSE_SECONDS`; 0 = never).
    pub tenant_idle_close_seconds: u64,
}

/// Seed 000's "Collection Configuration" table, accepted in the YAML file as
///
/// ```yaml
/// collection:
///   max_series: 10000          # = max_metric_series
///   max_points_per_series: 1000
///   collection_interval: 60    # accepted, no effect (metricsd is pushed to)
///   batch_size: 100            # = max_batch_items
///   timeout: 30                # = request_timeout_seconds
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSection {
    /// `max_metric_series`.
    pub max_series: Option<usize>,
    /// `max_points_per_series`.
    pub max_points_per_series: Option<usize>,
    /// Seconds; validated (1 – 86400), otherwise without effect.
    pub collection_interval: Option<u64>,
    /// `max_batch_items`.
    pub batch_size: Option<usize>,
    /// `request_timeout_seconds`.
    pub timeout: Option<u64>,
}

/// Seed 000's "Aggregation Configuration" table, accepted in the YAML file as
///
/// ```yaml
/// aggregation:
///   window_seconds: 300        # = aggregation_window_seconds
///   retention_hours: 24        # = retention_hours
///   aggregation_types: [avg, sum, min, max]
///   trend_hours: 24
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationSection {
    /// `aggregation_window_seconds`.
    pub window_seconds: Option<u64>,
    /// `retention_hours`.
    pub retention_hours: Option<u64>,
    /// `aggregation_types`.
    pub aggregation_types: Option<Vec<AggregationType>>,
    /// `trend_hours`.
    pub trend_hours: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8012)),
            data_dir: PathBuf::from("./data"),
            env: "local".into(),
            log_level: "info".into(),
            metrics_endpoint: "http://localhost:8012".into(),
            max_metric_series: 10_000,
            max_points_per_series: 1000,
            aggregation_window_seconds: 300,
            enable_tracing: false,
            max_body_bytes: 10 << 20,
            max_batch_items: 10_000,
            max_label_names_per_series: 64,
            max_label_name_length: 1024,
            max_label_value_length: 4096,
            naming_policy: NamingPolicy::Off,
            retention_hours: 15 * 24,
            fsync: Fsync::Interval,
            export_lookback_seconds: 3600,
            summary_window_seconds: 600,
            summary_max_observations: 1000,
            query_lookback_delta: PromDuration(Duration::from_secs(300)),
            query_timeout_seconds: 120,
            query_max_samples: 50_000_000,
            query_max_points_per_series: 11_000,
            enable_admin_api: false,
            max_concurrent_requests: 256,
            request_timeout_seconds: 60,
            header_read_timeout_seconds: 30,
            body_read_timeout_seconds: 30,
            body_min_bytes_per_second: 1024,
            max_connections: 1024,
            max_connections_per_client: 512,
            series_idle_timeout_seconds: 3600,
            aggregation_types: AggregationType::ALL.to_vec(),
            trend_hours: 24,
            collection: None,
            aggregation: None,
            inert: Vec::new(),
            creation_grace_period_seconds: 600,
            compaction_interval_seconds: 60,
            max_tenants: 1000,
            tenant_idle_close_seconds: 900,
        }
    }
}

/// Settings given on the command line; `None` leaves the lower layers' value. It is also
/// the `metricsd serve` flag set (flattened into the CLI with clap), so each flag is
/// declared once.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 0.0.0.0:8012].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the store keeps its data [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log level: trace, debug, info, warn, error [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Most series per tenant (0 = no limit) [default: 10000].
    #[arg(long)]
    pub max_metric_series: Option<usize>,
    /// Naming policy: off, warn, enforce [default: off].
    #[arg(long)]
    pub naming_policy: Option<NamingPolicy>,
    /// WAL fsync: always, interval, never [default: interval].
    #[arg(long)]
    pub fsync: Option<Fsync>,
    /// How far back PromQL instant selectors look, e.g. 5m [default: 5m].
    #[arg(long)]
    pub query_lookback_delta: Option<PromDuration>,
    /// Longest a PromQL query may run, in seconds [default: 120].
    #[arg(long)]
    pub query_timeout_seconds: Option<u64>,
    /// Most samples a PromQL query may hold in memory [default: 50000000].
    #[arg(long)]
    pub query_max_samples: Option<u64>,
    /// Serve /api/v1/admin/* (series deletion); the flag only ever turns it on.
    #[arg(long)]
    pub enable_admin_api: bool,
    /// Most requests in flight; beyond it 503 with Retry-After [default: 256].
    #[arg(long)]
    pub max_concurrent_requests: Option<usize>,
    /// Seconds before a request is answered 503 [default: 60].
    #[arg(long)]
    pub request_timeout_seconds: Option<u64>,
    /// Seconds a connection may take to send a request's headers [default: 30].
    #[arg(long)]
    pub header_read_timeout_seconds: Option<u64>,
    /// Seconds after which the collector forgets an untracked series [default: 3600].
    #[arg(long)]
    pub series_idle_timeout_seconds: Option<u64>,
}

/// A setting that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct ConfigError {
    /// The setting (YAML key, environment variable or flag).
    pub setting: String,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(setting: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        reason: reason.into(),
    }
}

/// The `ACCESS_*` variables and the setting each one sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("ACCESS_ENV", "env"),
    ("ACCESS_LOG_LEVEL", "log_level"),
    ("ACCESS_METRICS_ENDPOINT", "metrics_endpoint"),
    ("ACCESS_MAX_METRIC_SERIES", "max_metric_series"),
    ("ACCESS_MAX_POINTS_PER_SERIES", "max_points_per_series"),
    ("ACCESS_AGGREGATION_WINDOW_SECONDS", "aggregation_window_seconds"),
    ("ACCESS_ENABLE_TRACING", "enable_tracing"),
    ("ACCESS_LISTEN", "listen"),
    ("ACCESS_DATA_DIR", "data_dir"),
    ("ACCESS_NAMING_POLICY", "naming_policy"),
    ("ACCESS_QUERY_LOOKBACK_DELTA", "query_lookback_delta"),
    ("ACCESS_QUERY_TIMEOUT_SECONDS", "query_timeout_seconds"),
    ("ACCESS_QUERY_MAX_SAMPLES", "query_max_samples"),
    (
        "ACCESS_QUERY_MAX_POINTS_PER_SERIES",
        "query_max_points_per_series",
    ),
    ("ACCESS_ENABLE_ADMIN_API", "enable_admin_api"),
    ("ACCESS_MAX_CONCURRENT_REQUESTS", "max_concurrent_requests"),
    ("ACCESS_REQUEST_TIMEOUT_SECONDS", "request_timeout_seconds"),
    (
        "ACCESS_HEADER_READ_TIMEOUT_SECONDS",
        "header_read_timeout_seconds",
    ),
    ("ACCESS_BODY_READ_TIMEOUT_SECONDS", "body_read_timeout_seconds"),
    ("ACCESS_BODY_MIN_BYTES_PER_SECOND", "body_min_bytes_per_second"),
    ("ACCESS_MAX_CONNECTIONS", "max_connections"),
    ("ACCESS_MAX_CONNECTIONS_PER_CLIENT", "max_connections_per_client"),
    (
        "ACCESS_SERIES_IDLE_TIMEOUT_SECONDS",
        "series_idle_timeout_seconds",
    ),
    ("ACCESS_AGGREGATION_TYPES", "aggregation_types"),
    ("ACCESS_TREND_HOURS", "trend_hours"),
    (
        "ACCESS_CREATION_GRACE_PERIOD_SECONDS",
        "creation_grace_period_seconds",
    ),
    (
        "ACCESS_COMPACTION_INTERVAL_SECONDS",
        "compaction_interval_seconds",
    ),
    ("ACCESS_MAX_TENANTS", "max_tenants"),
    ("ACCESS_TENANT_IDLE_CLOSE_SECONDS", "tenant_idle_close_seconds"),
];

impl Config {
    /// Builds the configuration: defaults, then the YAML file at `file` (if any), then the
    /// environment as read by `env`, then `flags`; validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut c = match file {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| bad("--config", format!("cannot read {}: {e}", p.display())))?;
                Config::from_yaml(&text).map_err(|e| bad(format!("--config {}", p.display()), e))?
            }
        };
        for (var, _) in ENV_VARS {
            if let Some(v) = env(var) {
                c.set_from_env(var, v.trim())?;
            }
        }
        if let Some(v) = flags.listen {
            c.listen = v;
        }
        if let Some(v) = &flags.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &flags.log_level {
            c.log_level = v.clone();
        }
        if let Some(v) = flags.max_metric_series {
            c.max_metric_series = v;
        }
        if let Some(v) = flags.naming_policy {
            c.naming_policy = v;
        }
        if let Some(v) = flags.fsync {
            c.fsync = v;
        }
        if let Some(v) = flags.query_lookback_delta {
            c.query_lookback_delta = v;
        }
        if let Some(v) = flags.query_timeout_seconds {
            c.query_timeout_seconds = v;
        }
        if let Some(v) = flags.query_max_samples {
            c.query_max_samples = v;
        }
        if flags.enable_admin_api {
            c.enable_admin_api = true;
        }
        if let Some(v) = flags.max_concurrent_requests {
            c.max_concurrent_requests = v;
        }
        if let Some(v) = flags.request_timeout_seconds {
            c.request_timeout_seconds = v;
        }
        if let Some(v) = flags.header_read_timeout_seconds {
            c.header_read_timeout_seconds = v;
        }
        if let Some(v) = flags.series_idle_timeout_seconds {
            c.series_idle_timeout_seconds = v;
        }
        c.validate()?;
        Ok(c)
    }

    /// Parses a YAML document (missing keys keep their defaults; unknown keys are errors).
    /// Seed 000's `collection:` and `aggregation:` sections are folded into our settings; a
    /// setting given both ways is an error.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let mut c: Config = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if c.collection.is_some() || c.aggregation.is_some() {
            // Which of our keys the file sets (the parse above checked the document).
            let keys: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
                serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
            c.fold_sections(&|k| keys.contains_key(k))?;
        }
        Ok(c)
    }

    /// Moves the values of seed 000's sections to the settings they name; `given(key)` says
    /// whether the file also sets our key.
    fn fold_sections(&mut self, given: &dyn Fn(&str) -> bool) -> Result<(), String> {
        fn set<T>(
            section: &str,
            key: &str,
            v: Option<T>,
            ours: &str,
            dst: &mut T,
            given: &dyn Fn(&str) -> bool,
        ) -> Result<(), String> {
            if let Some(v) = v {
                if given(ours) {
                    return Err(format!(
                        "{section}.{key} and {ours} set the same setting: give one of them"
                    ));
                }
                *dst = v;
            }
            Ok(())
        }
        if let Some(c) = self.collection.take() {
            set(
                "collection",
                "max_series",
                c.max_series,
                "max_metric_series",
                &mut self.max_metric_series,
                given,
            )?;
            set(
                "collection",
                "max_points_per_series",
                c.max_points_per_series,
                "max_points_per_series",
                &mut self.max_points_per_series,
                given,
            )?;
            set(
                "collection",
                "batch_size",
                c.batch_size,
                "max_batch_items",
                &mut self.max_batch_items,
                given,
            )?;
            set(
                "collection",
                "timeout",
                c.timeout,
                "request_timeout_seconds",
                &mut self.request_timeout_seconds,
                given,
            )?;
            if let Some(i) = c.collection_interval {
                if !(1..=86_400).contains(&i) {
                    return Err(format!(
                        "collection.collection_interval: {i} is not between 1 and 86400"
                    ));
                }
                self.inert.push("collection.collection_interval".into());
            }
        }
        if let Some(a) = self.aggregation.take() {
            set(
                "aggregation",
                "window_seconds",
                a.window_seconds,
                "aggregation_window_seconds",
                &mut self.aggregation_window_seconds,
                given,
            )?;
            set(
                "aggregation",
                "retention_hours",
                a.retention_hours,
                "retention_hours",
                &mut self.retention_hours,
                given,
            )?;
            set(
                "aggregation",
                "aggregation_types",
                a.aggregation_types,
                "aggregation_types",
                &mut self.aggregation_types,
                given,
            )?;
            set(
                "aggregation",
                "trend_hours",
                a.trend_hours,
                "trend_hours",
                &mut self.trend_hours,
                given,
            )?;
        }
        Ok(())
    }

    fn set_from_env(&mut self, var: &str, v: &str) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, ConfigError> {
            v.parse()
                .map_err(|_| bad(var, format!("{v:?} is not a non-negative integer")))
        }
        fn boolean(var: &str, v: &str) -> Result<bool, ConfigError> {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                _ => Err(bad(var, format!("{v:?} is not a boolean (true/false)"))),
            }
        }
        match var {
            "ACCESS_ENV" => self.env = v.to_owned(),
            "ACCESS_LOG_LEVEL" => self.log_level = v.to_owned(),
            "ACCESS_METRICS_ENDPOINT" => self.metrics_endpoint = v.to_owned(),
            "ACCESS_MAX_METRIC_SERIES" => self.max_metric_series = num(var, v)?,
            "ACCESS_MAX_POINTS_PER_SERIES" => self.max_points_per_series = num(var, v)?,
            "ACCESS_AGGREGATION_WINDOW_SECONDS" => self.aggregation_window_seconds = num(var, v)?,
            "ACCESS_ENABLE_TRACING" => self.enable_tracing = boolean(var, v)?,
            "ACCESS_ENABLE_ADMIN_API" => self.enable_admin_api = boolean(var, v)?,
            "ACCESS_QUERY_LOOKBACK_DELTA" => {
                self.query_lookback_delta = v.parse().map_err(|e: String| bad(var, e))?
            }
            "ACCESS_QUERY_TIMEOUT_SECONDS" => self.query_timeout_seconds = num(var, v)?,
            "ACCESS_QUERY_MAX_SAMPLES" => self.query_max_samples = num(var, v)?,
            "ACCESS_QUERY_MAX_POINTS_PER_SERIES" => self.query_max_points_per_series = num(var, v)?,
            "ACCESS_LISTEN" => {
                self.listen = v
                    .parse()
                    .map_err(|_| bad(var, format!("{v:?} is not a socket address like 0.0.0.0:8012")))?
            }
            "ACCESS_DATA_DIR" => self.data_dir = PathBuf::from(v),
            "ACCESS_NAMING_POLICY" => self.naming_policy = v.parse().map_err(|e: String| bad(var, e))?,
            "ACCESS_MAX_CONCURRENT_REQUESTS" => self.max_concurrent_requests = num(var, v)?,
            "ACCESS_REQUEST_TIMEOUT_SECONDS" => self.request_timeout_seconds = num(var, v)?,
            "ACCESS_HEADER_READ_TIMEOUT_SECONDS" => self.header_read_timeout_seconds = num(var, v)?,
            "ACCESS_BODY_READ_TIMEOUT_SECONDS" => self.body_read_timeout_seconds = num(var, v)?,
            "ACCESS_BODY_MIN_BYTES_PER_SECOND" => self.body_min_bytes_per_second = num(var, v)?,
            "ACCESS_MAX_CONNECTIONS" => self.max_connections = num(var, v)?,
            "ACCESS_MAX_CONNECTIONS_PER_CLIENT" => self.max_connections_per_client = num(var, v)?,
            "ACCESS_SERIES_IDLE_TIMEOUT_SECONDS" => self.series_idle_timeout_seconds = num(var, v)?,
            "ACCESS_AGGREGATION_TYPES" => {
                self.aggregation_types = v
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, String>>()
                    .map_err(|e| bad(var, e))?
            }
            "ACCESS_TREND_HOURS" => self.trend_hours = num(var, v)?,
            "ACCESS_CREATION_GRACE_PERIOD_SECONDS" => self.creation_grace_period_seconds = num(var, v)?,
            "ACCESS_COMPACTION_INTERVAL_SECONDS" => self.compaction_interval_seconds = num(var, v)?,
            "ACCESS_MAX_TENANTS" => self.max_tenants = num(var, v)?,
            "ACCESS_TENANT_IDLE_CLOSE_SECONDS" => self.tenant_idle_close_seconds = num(var, v)?,
            // A variable of ENV_VARS without an arm here would be ignored silently; the test
            // `every_environment_variable_sets_its_setting` catches it before this can run.
            _ => return Err(bad(var, "is not a setting of this server")),
        }
        Ok(())
    }

    /// Checks ranges and formats; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];
        if !LEVELS.contains(&self.log_level.to_ascii_lowercase().as_str()) {
            return Err(bad(
                "log_level",
                format!("{:?} is not one of {}", self.log_level, LEVELS.join(", ")),
            ));
        }
        if !(self.metrics_endpoint.starts_with("http://") || self.metrics_endpoint.starts_with("https://")) {
            return Err(bad(
                "metrics_endpoint",
                format!("{:?} is not an http(s) URL", self.metrics_endpoint),
            ));
        }
        if self.max_points_per_series == 0 {
            return Err(bad("max_points_per_series", "must be at least 1"));
        }
        if self.aggregation_window_seconds == 0 || self.aggregation_window_seconds > 7 * 24 * 3600 {
            return Err(bad(
                "aggregation_window_seconds",
                "must be between 1 and 604800 (7 days)",
            ));
        }
        if self.body_read_timeout_seconds == 0 {
            return Err(bad("body_read_timeout_seconds", "must be at least 1"));
        }
        if self.max_connections < 2 {
            return Err(bad("max_connections", "must be at least 2"));
        }
        if self.max_body_bytes < 1024 {
            return Err(bad("max_body_bytes", "must be at least 1024"));
        }
        if self.max_batch_items == 0 {
            return Err(bad("max_batch_items", "must be at least 1"));
        }
        if self.max_label_names_per_series < 2 {
            return Err(bad(
                "max_label_names_per_series",
                "must be at least 2 (__name__ and one label)",
            ));
        }
        if self.max_label_name_length == 0 || self.max_label_value_length == 0 {
            return Err(bad(
                "max_label_name_length/max_label_value_length",
                "must be at least 1",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if self.summary_window_seconds == 0 || self.summary_max_observations == 0 {
            return Err(bad(
                "summary_window_seconds/summary_max_observations",
                "must be at least 1",
            ));
        }
        if self.export_lookback_seconds == 0 {
            return Err(bad("export_lookback_seconds", "must be at least 1"));
        }
        if !(1..=86_400).contains(&self.query_timeout_seconds) {
            return Err(bad(
                "query_timeout_seconds",
                format!(
                    "{} is not between 1 and 86400 (a day)",
                    self.query_timeout_seconds
                ),
            ));
        }
        if self.query_max_samples == 0 {
            return Err(bad("query_max_samples", "must be at least 1"));
        }
        if self.query_max_points_per_series == 0 {
            return Err(bad("query_max_points_per_series", "must be at least 1"));
        }
        if !(1..=1_000_000).contains(&self.max_concurrent_requests) {
            return Err(bad(
                "max_concurrent_requests",
                format!("{} is not between 1 and 1000000", self.max_concurrent_requests),
            ));
        }
        if !(1..=86_400).contains(&self.request_timeout_seconds) {
            return Err(bad(
                "request_timeout_seconds",
                format!(
                    "{} is not between 1 and 86400 (a day)",
                    self.request_timeout_seconds
                ),
            ));
        }
        if !(1..=366 * 86_400).contains(&self.series_idle_timeout_seconds) {
            return Err(bad(
                "series_idle_timeout_seconds",
                format!(
                    "{} is not between 1 and 31622400 (366 days)",
                    self.series_idle_timeout_seconds
                ),
            ));
        }
        if self.aggregation_types.is_empty() {
            return Err(bad(
                "aggregation_types",
                "must name at least one of avg, sum, min, max",
            ));
        }
        if !(1..=744).contains(&self.trend_hours) {
            return Err(bad(
                "trend_hours",
                format!("{} is not between 1 and 744 (31 days)", self.trend_hours),
            ));
        }
        if self.creation_grace_period_seconds > 366 * 86_400 {
            return Err(bad(
                "creation_grace_period_seconds",
                format!(
                    "{} is not between 0 and 31622400 (366 days)",
                    self.creation_grace_period_seconds
                ),
            ));
        }
        if !(1..=86_400).contains(&self.compaction_interval_seconds) {
            return Err(bad(
                "compaction_interval_seconds",
                format!(
                    "{} is not between 1 and 86400 (a day)",
                    self.compaction_interval_seconds
                ),
            ));
        }
        if !(1..=3600).contains(&self.header_read_timeout_seconds) {
            return Err(bad(
                "header_read_timeout_seconds",
                format!("{} is not between 1 and 3600", self.header_read_timeout_seconds),
            ));
        }
        Ok(())
    }

    /// The PromQL engine's settings.
    pub fn engine_options(&self) -> metricsd_promql::EngineOptions {
        metricsd_promql::EngineOptions {
            lookback_delta_ms: self.query_lookback_delta.as_millis(),
            timeout: Duration::from_secs(self.query_timeout_seconds),
            max_samples: self.query_max_samples,
            max_points_per_series: self.query_max_points_per_series,
            ..Default::default()
        }
    }

    /// The label limits as the model layer takes them.
    pub fn limits(&self) -> metricsd_model::Limits {
        metricsd_model::Limits {
            max_label_names_per_series: self.max_label_names_per_series,
            max_label_name_length: self.max_label_name_length,
            max_label_value_length: self.max_label_value_length,
        }
    }

    /// The options of the store as a whole.
    pub fn storage_options(&self) -> metricsd_tsdb::StorageOptions {
        metricsd_tsdb::StorageOptions {
            max_tenants: self.max_tenants,
            idle_close_after: (self.tenant_idle_close_seconds > 0)
                .then(|| Duration::from_secs(self.tenant_idle_close_seconds)),
        }
    }

    /// The store options for every tenant.
    pub fn db_options(&self) -> metricsd_tsdb::DbOptions {
        let mut o = metricsd_tsdb::DbOptions {
            max_series: self.max_metric_series,
            limits: self.limits(),
            retention_ms: (self.retention_hours as i64).saturating_mul(3_600_000),
            max_future_ms: (self.creation_grace_period_seconds as i64).saturating_mul(1000),
            ..Default::default()
        };
        o.wal.fsync = match self.fsync {
            Fsync::Always => metricsd_tsdb::FsyncPolicy::Always,
            Fsync::Interval => metricsd_tsdb::FsyncPolicy::Interval(Duration::from_secs(1)),
            Fsync::Never => metricsd_tsdb::FsyncPolicy::Never,
        };
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_variable_sets_its_setting() {
        // For each variable, the first of these values it accepts must change its setting.
        const VALUES: &[&str] = &[
            "17",
            "true",
            "debug",
            "127.0.0.1:9",
            "http://example.invalid:1",
            "enforce",
            "never",
            "7m",
            "avg,sum",
            "production",
            "/tmp/elsewhere",
        ];
        let base = serde_json::to_value(Config::default()).unwrap();
        for (var, setting) in ENV_VARS {
            assert!(
                base.get(setting).is_some(),
                "{var}: no setting {setting} in Config"
            );
            let changed = VALUES.iter().any(|v| {
                let mut c = Config::default();
                c.set_from_env(var, v).is_ok() && serde_json::to_value(&c).unwrap()[setting] != base[setting]
            });
            assert!(changed, "{var} does not set {setting}");
        }
    }

    fn load(yaml: Option<&str>, env: &[(&str, &str)], flags: &Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metricsd.yml");
        if let Some(y) = yaml {
            std::fs::write(&path, y).unwrap();
        }
        let env: Vec<(String, String)> = env.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        Config::load(
            yaml.map(|_| path.as_path()),
            |k| env.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone()),
            flags,
        )
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let c = load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.max_metric_series, 10_000);
        let c = load(
            Some("max_metric_series: 5\nmax_points_per_series: 7\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!((c.max_metric_series, c.max_points_per_series), (5, 7));
        let c = load(
            Some("max_metric_series: 5\n"),
            &[("ACCESS_MAX_METRIC_SERIES", "6")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.max_metric_series, 6);
        let flags = Overrides {
            max_metric_series: Some(8),
            ..Default::default()
        };
        let c = load(
            Some("max_metric_series: 5\n"),
            &[("ACCESS_MAX_METRIC_SERIES", "6")],
            &flags,
        )
        .unwrap();
        assert_eq!(c.max_metric_series, 8);
    }

    #[test]
    fn errors_name_the_setting() {
        let e = load(
            None,
            &[("ACCESS_MAX_METRIC_SERIES", "lots")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "ACCESS_MAX_METRIC_SERIES");
        let e = load(None, &[("ACCESS_LOG_LEVEL", "loud")], &Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "log_level");
        let e = load(Some("max_seriess: 3\n"), &[], &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("max_seriess"), "{e}");
        let e = load(None, &[("ACCESS_ENABLE_TRACING", "maybe")], &Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "ACCESS_ENABLE_TRACING");
        let e = load(Some("naming_policy: strict\n"), &[], &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("strict"), "{e}");
        let e = load(
            None,
            &[("ACCESS_MAX_CONCURRENT_REQUESTS", "0")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "max_concurrent_requests");
        let e = load(
            None,
            &[("ACCESS_REQUEST_TIMEOUT_SECONDS", "soon")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "ACCESS_REQUEST_TIMEOUT_SECONDS");
        let e = load(
            Some("header_read_timeout_seconds: 0\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "header_read_timeout_seconds");
        let e = load(
            None,
            &[("ACCESS_SERIES_IDLE_TIMEOUT_SECONDS", "0")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "series_idle_timeout_seconds");
        let e = load(
            None,
            &[("ACCESS_CREATION_GRACE_PERIOD_SECONDS", "soon")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "ACCESS_CREATION_GRACE_PERIOD_SECONDS");
        let e = load(
            Some("creation_grace_period_seconds: 99999999\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "creation_grace_period_seconds");
        let c = load(
            None,
            &[("ACCESS_CREATION_GRACE_PERIOD_SECONDS", "0")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.db_options().max_future_ms, 0);
        assert_eq!(
            load(None, &[], &Overrides::default())
                .unwrap()
                .db_options()
                .max_future_ms,
            600_000
        );
        let e = load(
            None,
            &[("ACCESS_COMPACTION_INTERVAL_SECONDS", "0")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "compaction_interval_seconds");
        let c = load(
            None,
            &[
                ("ACCESS_MAX_TENANTS", "3"),
                ("ACCESS_TENANT_IDLE_CLOSE_SECONDS", "0"),
            ],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.storage_options().max_tenants, 3);
        assert_eq!(c.storage_options().idle_close_after, None);
        let o = load(None, &[], &Overrides::default()).unwrap().storage_options();
        assert_eq!(
            (o.max_tenants, o.idle_close_after),
            (1000, Some(Duration::from_secs(900)))
        );
        let flags = Overrides {
            request_timeout_seconds: Some(0),
            ..Default::default()
        };
        let e = load(None, &[("ACCESS_REQUEST_TIMEOUT_SECONDS", "5")], &flags).unwrap_err();
        assert_eq!(e.setting, "request_timeout_seconds");
    }

    #[test]
    fn query_settings_from_every_layer() {
        let c = load(None, &[], &Overrides::default()).unwrap();
        let o = c.engine_options();
        assert_eq!(o.lookback_delta_ms, 300_000);
        assert_eq!(o.timeout, Duration::from_secs(120));
        assert_eq!((o.max_samples, o.max_points_per_series), (50_000_000, 11_000));
        assert!(!c.enable_admin_api);
        let c = load(
            Some("query_lookback_delta: 1m30s\nquery_timeout_seconds: 5\nenable_admin_api: true\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.query_lookback_delta.as_millis(), 90_000);
        assert_eq!((c.query_timeout_seconds, c.enable_admin_api), (5, true));
        let c = load(Some("query_lookback_delta: 120\n"), &[], &Overrides::default()).unwrap();
        assert_eq!(c.query_lookback_delta.to_string(), "2m");
        let c = load(
            None,
            &[
                ("ACCESS_QUERY_LOOKBACK_DELTA", "10m"),
                ("ACCESS_QUERY_MAX_SAMPLES", "1000"),
                ("ACCESS_QUERY_MAX_POINTS_PER_SERIES", "50"),
                ("ACCESS_ENABLE_ADMIN_API", "true"),
            ],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.query_lookback_delta.as_millis(), 600_000);
        assert_eq!((c.query_max_samples, c.query_max_points_per_series), (1000, 50));
        assert!(c.enable_admin_api);
        let flags = Overrides {
            query_lookback_delta: Some("30s".parse().unwrap()),
            query_timeout_seconds: Some(7),
            enable_admin_api: true,
            ..Default::default()
        };
        let c = load(None, &[("ACCESS_QUERY_LOOKBACK_DELTA", "10m")], &flags).unwrap();
        assert_eq!(c.query_lookback_delta.as_millis(), 30_000);
        assert_eq!(c.query_timeout_seconds, 7);
        assert!(c.enable_admin_api);
        let e = load(
            None,
            &[("ACCESS_QUERY_LOOKBACK_DELTA", "soon")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "ACCESS_QUERY_LOOKBACK_DELTA");
        let e = load(Some("query_lookback_delta: 0s\n"), &[], &Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("query_lookback_delta") || e.to_string().contains("0s"),
            "{e}"
        );
        let e = load(Some("query_timeout_seconds: 0\n"), &[], &Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "query_timeout_seconds");
    }

    /// Seed 000's configuration tables, nested as the seed lays them out, set our settings.
    #[test]
    fn seed_sections_are_accepted() {
        let yaml = "collection:\n  max_series: 500\n  max_points_per_series: 20\n  collection_interval: 60\n  batch_size: 100\n  timeout: 30\n\
aggregation:\n  window_seconds: 120\n  retention_hours: 24\n  aggregation_types: [\"avg\", \"max\"]\n  trend_hours: 6\n\
log_level: debug\n";
        let c = load(Some(yaml), &[], &Overrides::default()).unwrap();
        assert_eq!((c.max_metric_series, c.max_points_per_series), (500, 20));
        assert_eq!((c.max_batch_items, c.request_timeout_seconds), (100, 30));
        assert_eq!(
            (c.aggregation_window_seconds, c.retention_hours, c.trend_hours),
            (120, 24, 6)
        );
        assert_eq!(
            c.aggregation_types,
            vec![AggregationType::Avg, AggregationType::Max]
        );
        assert_eq!(c.inert, vec!["collection.collection_interval".to_owned()]);
        assert!(c.collection.is_none() && c.aggregation.is_none());
        assert_eq!(c.log_level, "debug");
        // Defaults: all four types, 24 trend hours, nothing inert.
        let d = load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(d.aggregation_types, AggregationType::ALL.to_vec());
        assert_eq!((d.trend_hours, d.inert.len()), (24, 0));
        // The environment and flags still override the file.
        let c = load(
            Some("collection:\n  max_series: 500\n"),
            &[
                ("ACCESS_MAX_METRIC_SERIES", "7"),
                ("ACCESS_AGGREGATION_TYPES", "sum, min"),
            ],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.max_metric_series, 7);
        assert_eq!(
            c.aggregation_types,
            vec![AggregationType::Sum, AggregationType::Min]
        );
        // The rendered configuration has our names only, and reads back.
        let yaml = serde_saphyr::to_string(&c).unwrap();
        assert!(
            !yaml.contains("collection") && yaml.contains("aggregation_types"),
            "{yaml}"
        );
        assert_eq!(
            Config::from_yaml(&yaml).unwrap().aggregation_types,
            c.aggregation_types
        );
    }

    #[test]
    fn seed_sections_errors() {
        let err = |yaml: &str| {
            load(Some(yaml), &[], &Overrides::default())
                .unwrap_err()
                .to_string()
        };
        let e = err("collection:\n  max_series: 5\nmax_metric_series: 6\n");
        assert!(
            e.contains("collection.max_series") && e.contains("max_metric_series"),
            "{e}"
        );
        let e = err("aggregation:\n  window_seconds: 5\naggregation_window_seconds: 6\n");
        assert!(e.contains("aggregation.window_seconds"), "{e}");
        let e = err("collection:\n  max_seriess: 5\n");
        assert!(e.contains("max_seriess"), "{e}");
        let e = err("aggregation:\n  aggregation_types: [avg, median]\n");
        assert!(e.contains("median"), "{e}");
        let e = err("aggregation:\n  aggregation_types: []\n");
        assert!(e.contains("aggregation_types"), "{e}");
        let e = err("aggregation:\n  trend_hours: 0\n");
        assert!(e.contains("trend_hours"), "{e}");
        let e = err("collection:\n  collection_interval: 0\n");
        assert!(e.contains("collection_interval"), "{e}");
        let e = err("collection:\n  timeout: 0\n");
        assert!(e.contains("request_timeout_seconds"), "{e}");
        let e = load(
            None,
            &[("ACCESS_AGGREGATION_TYPES", "avg,p99")],
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "ACCESS_AGGREGATION_TYPES");
    }

    #[test]
    fn the_effective_configuration_renders_as_yaml_and_reads_back() {
        let c = Config {
            query_lookback_delta: "90s".parse().unwrap(),
            enable_admin_api: true,
            ..Default::default()
        };
        let yaml = serde_saphyr::to_string(&c).unwrap();
        assert!(yaml.contains("query_lookback_delta: 1m30s"), "{yaml}");
        let back = Config::from_yaml(&yaml).unwrap();
        assert_eq!(back.query_lookback_delta, c.query_lookback_delta);
        assert_eq!(back.listen, c.listen);
        assert!(back.enable_admin_api);
    }
}

#[cfg(test)]
mod docs_table {
    //! `docs/configuration.md`'s table is checked against the code: every setting has a
    //! row, every row a setting, and the environment variable, flag and default a row names
    //! are the ones the code has. (One table generating all of them is issue 12's next step;
    //! this keeps the five places from diverging meanwhile.)

    use super::*;

    struct Row {
        key: String,
        env: Option<String>,
        flag: Option<String>,
        default: String,
    }

    fn rows() -> Vec<Row> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let code = |cell: &str| -> Option<String> {
            let a = cell.find('`')?;
            let b = cell[a + 1..].find('`')?;
            Some(cell[a + 1..a + 1 + b].to_owned())
        };
        text.lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                Row {
                    key: code(cells[1]).unwrap(),
                    env: code(cells[2]),
                    flag: code(cells[3]),
                    default: code(cells[4]).unwrap_or_else(|| cells[4].to_owned()),
                }
            })
            .collect()
    }

    #[test]
    fn the_documented_table_matches_the_code() {
        use clap::Args as _;
        let rows = rows();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let fields: Vec<&String> = defaults.as_object().unwrap().keys().collect();
        let mut problems = Vec::new();
        for f in &fields {
            if !rows.iter().any(|r| &&r.key == f) {
                problems.push(format!("setting {f} has no row"));
            }
        }
        let cmd = Overrides::augment_args(clap::Command::new("serve"));
        let flags: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for r in &rows {
            let Some(default) = defaults.get(&r.key) else {
                problems.push(format!("row {} names no setting", r.key));
                continue;
            };
            let env_of_key: Vec<&str> = ENV_VARS
                .iter()
                .filter(|(_, k)| *k == r.key)
                .map(|(v, _)| *v)
                .collect();
            match &r.env {
                Some(e) if !env_of_key.contains(&e.as_str()) => {
                    problems.push(format!("row {}: {e} does not set it", r.key))
                }
                None if !env_of_key.is_empty() => {
                    problems.push(format!("row {}: {env_of_key:?} undocumented", r.key))
                }
                _ => {}
            }
            let flag_of_key = format!("--{}", r.key.replace('_', "-"));
            match &r.flag {
                Some(f) if !flags.contains(f) => problems.push(format!("row {}: no flag {f}", r.key)),
                None if flags.contains(&flag_of_key) => {
                    problems.push(format!("row {}: {flag_of_key} undocumented", r.key))
                }
                _ => {}
            }
            let shown = match default {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            if let Some(shown) = shown
                && shown != r.default
            {
                problems.push(format!(
                    "row {}: default {:?} documented, {shown:?} in the code",
                    r.key, r.default
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "docs/configuration.md and the code differ:\n{}",
            problems.join("\n")
        );
    }
}
