//! The flags of `metricsd serve`, one per setting, built from the server's table of
//! settings (`metricsd_server::SETTINGS`) so that a setting is declared only there.

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use metricsd_server::{Overrides, SETTINGS};

/// The settings given as flags.
#[derive(Debug, Clone, Default)]
pub struct SettingFlags(pub Overrides);

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut o = Overrides::default();
        for s in SETTINGS {
            if let Some(v) = m.get_one::<String>(s.key) {
                // Every key comes from SETTINGS, so `set` finds it.
                let _ = o.set(s.key, v.clone());
            }
        }
        Ok(SettingFlags(o))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(cmd: Command) -> Command {
        SETTINGS.iter().fold(cmd, |cmd, s| {
            let mut arg = Arg::new(s.key)
                .long(s.flag())
                .value_name(s.value_name)
                .help(s.summary())
                .long_help(format!("{} [env: {}]", s.meaning(), s.env_var()));
            if s.switch {
                // `--enable-admin-api` alone means true; `--enable-admin-api=false` is allowed.
                arg = arg
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true");
            }
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        flags: SettingFlags,
    }

    fn load(args: &[&str]) -> metricsd_server::Config {
        let s = Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap();
        metricsd_server::Config::load(None, |_| None, &s.flags.0).unwrap()
    }

    #[test]
    fn every_setting_has_its_flag() {
        let cmd = SettingFlags::augment_args(Command::new("serve"));
        for s in SETTINGS {
            let long = s.flag();
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(long.as_str())),
                "--{long}"
            );
        }
        assert_eq!(load(&["--max-metric-series", "7"]).max_metric_series, 7);
        assert_eq!(load(&["--max-tenants=3"]).max_tenants, 3);
        assert!(load(&["--enable-admin-api"]).enable_admin_api);
        assert!(!load(&["--enable-admin-api=false"]).enable_admin_api);
        assert_eq!(
            load(&["--query-lookback-delta", "90s"])
                .query_lookback_delta
                .as_millis(),
            90_000
        );
        assert!(Serve::try_parse_from(["serve", "--max-seriess", "1"]).is_err());
    }

    #[test]
    fn a_bad_flag_value_names_the_flag() {
        let s = Serve::try_parse_from(["serve", "--max-tenants", "many"]).unwrap();
        let e = metricsd_server::Config::load(None, |_| None, &s.flags.0).unwrap_err();
        assert_eq!(e.setting, "--max-tenants");
    }
}
