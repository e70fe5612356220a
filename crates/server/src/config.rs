//! Configuration: embedded defaults, then an optional YAML file, then `ACCESS_*`
//! environment variables, then command-line flags (each layer overrides the previous).
//! See `docs/configuration.md` for the table of settings.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::aggregate::AggregationType;

mod settings;
pub use settings::{Config, SETTINGS, Setting, SettingValue};

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

/// Settings given on the command line, as text keyed by setting; they override every
/// other layer. The binary builds one flag per entry of [`SETTINGS`] and fills this from
/// them, so this crate needs no command-line parser.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    given: Vec<(&'static str, String)>,
}

impl Overrides {
    /// Records `--<flag> <text>` for the setting `key`; `None` when no setting has that key.
    pub fn set(&mut self, key: &str, text: impl Into<String>) -> Option<()> {
        let s = Setting::find(key)?;
        self.given.retain(|(k, _)| *k != s.key);
        self.given.push((s.key, text.into()));
        Some(())
    }
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
        for s in SETTINGS {
            let var = s.env_var();
            if let Some(v) = env(&var) {
                c.set_text(s.key, v.trim()).map_err(|e| bad(var, e))?;
            }
        }
        for (key, v) in &flags.given {
            let flag = Setting::find(key).map(Setting::flag).unwrap_or_default();
            c.set_text(key, v).map_err(|e| bad(format!("--{flag}"), e))?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Notes which of the environment's variable `names` look like ours (`ACCESS_*`) but
    /// set nothing: a typo there would otherwise go unseen.
    pub fn note_unknown_env_vars(&mut self, names: impl IntoIterator<Item = String>) {
        self.unknown_env_vars = names
            .into_iter()
            .filter(|n| n.starts_with("ACCESS_") && !SETTINGS.iter().any(|s| s.env_var() == *n))
            .collect();
        self.unknown_env_vars.sort();
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
    fn every_setting_reads_back_what_it_renders_and_its_variable_sets_it() {
        // For each setting, the first of these values it accepts must change it.
        const VALUES: &[&str] = &[
            "17",
            "2048",
            "true",
            "debug",
            "127.0.0.1:9",
            "http://example.invalid:1",
            "enforce",
            "never",
            "7m",
            "avg,sum",
            "/tmp/elsewhere",
        ];
        let base = Config::default();
        let yaml = |c: &Config| serde_json::to_value(c).unwrap();
        let keys: Vec<String> = yaml(&base).as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), SETTINGS.len(), "{keys:?}");
        for s in SETTINGS {
            let shown = base.render(s.key).unwrap();
            let mut c = Config::default();
            assert_eq!(c.set_text(s.key, &shown), Ok(true), "{}", s.key);
            assert_eq!(yaml(&c)[s.key], yaml(&base)[s.key], "{} = {shown:?}", s.key);
            let var = s.env_var();
            let changed = VALUES.iter().any(|v| {
                let c = Config::load(None, |k| (k == var).then(|| v.to_string()), &Overrides::default());
                c.is_ok_and(|c| yaml(&c)[s.key] != yaml(&base)[s.key])
            });
            assert!(changed, "{var} does not set {}", s.key);
            let mut flags = Overrides::default();
            let changed = VALUES.iter().any(|v| {
                flags.set(s.key, *v).unwrap();
                let c = Config::load(None, |_| None, &flags);
                c.is_ok_and(|c| yaml(&c)[s.key] != yaml(&base)[s.key])
            });
            assert!(changed, "--{} does not set {}", s.flag(), s.key);
        }
        assert_eq!(Config::default().set_text("max_seriess", "1"), Ok(false));
        let mut c = Config::default();
        c.note_unknown_env_vars(
            ["ACCESS_MAX_SERIES", "ACCESS_MAX_TENANTS", "PATH", "ACCESS_A"].map(String::from),
        );
        assert_eq!(c.unknown_env_vars, ["ACCESS_A", "ACCESS_MAX_SERIES"]);
        assert!(Overrides::default().set("max_seriess", "1").is_none());
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
        let mut flags = Overrides::default();
        flags.set("max_metric_series", "8").unwrap();
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
        let mut flags = Overrides::default();
        flags.set("request_timeout_seconds", "0").unwrap();
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
        let mut flags = Overrides::default();
        flags.set("query_lookback_delta", "30s").unwrap();
        flags.set("query_timeout_seconds", "7").unwrap();
        flags.set("enable_admin_api", "true").unwrap();
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
    //! `docs/configuration.md`'s table of settings is generated from [`SETTINGS`]: this test
    //! renders it and fails when the file differs; `METRICSD_BLESS=1` rewrites the file.

    use super::*;

    const BEGIN: &str = "<!-- settings: generated from crates/server/src/config/settings.rs; METRICSD_BLESS=1 cargo test -p metricsd-server docs_table rewrites it -->\n";
    const END: &str = "<!-- end of settings -->\n";

    fn table() -> String {
        let defaults = Config::default();
        let mut t = String::from(
            "| Setting (YAML key) | Environment | Flag | Default | Meaning |\n|---|---|---|---|---|\n",
        );
        for s in SETTINGS {
            let default = defaults.render(s.key).unwrap_or_default();
            let flag = if s.switch {
                format!("--{}", s.flag())
            } else {
                format!("--{} {}", s.flag(), s.value_name)
            };
            t.push_str(&format!(
                "| `{}` | `{}` | `{flag}` | `{default}` | {} |\n",
                s.key,
                s.env_var(),
                s.meaning().replace('|', "\\|")
            ));
        }
        t
    }

    #[test]
    fn the_documented_table_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let (a, b) = (
            text.find(BEGIN).expect("begin marker"),
            text.find(END).expect("end marker"),
        );
        let (head, tail) = (&text[..a + BEGIN.len()], &text[b..]);
        let want = format!("{head}{}{tail}", table());
        if std::env::var_os("METRICSD_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        assert!(
            text == want,
            "docs/configuration.md's table is not the one SETTINGS generates; rerun with METRICSD_BLESS=1"
        );
    }
}
