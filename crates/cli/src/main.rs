//! The `metricsd` binary: flags, wiring and exit codes.

#![warn(clippy::unwrap_used, clippy::panic)]
use std::path::PathBuf;
use std::process::ExitCode;

mod flags;
mod query;

use clap::{Parser, Subcommand};
use metricsd_server::Config;

// The request path allocates many small, short-lived objects (JSON values, label sets);
// mimalloc's thread-local free lists cut the allocator's share of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for the process, as Redis and most databases advise.
/// mimalloc asks the kernel for huge pages on its arenas, so a heap that is spread thin (a
/// head of many small series, request buffers freed a moment ago) is charged whole 2 MiB
/// pages: with THP, RSS after loading 100k series was 1.5× what it is without, for no CPU
/// gain (docs/benchmarks.md). Setting `MIMALLOC_ALLOW_THP` in the environment leaves the
/// choice to mimalloc.
#[allow(unsafe_code, reason = "prctl is a plain syscall wrapper; see the SAFETY note")]
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes nothing but
        // this process's THP flag; a failure (old kernel) leaves THP as it was.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

/// mimalloc v3's `purge_delay` option (`mi_option_purge_delay` in its `mimalloc.h`; the
/// Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc v3's default for it, ms.
const MI_DEFAULT_PURGE_DELAY_MS: std::ffi::c_long = 1000;
/// Ours, ms: purge at once.
const PURGE_DELAY_MS: std::ffi::c_long = 0;

/// Lets mimalloc return freed pages to the OS at once instead of after its default second.
///
/// mimalloc purges freed pages lazily, from the thread that owns them, the next time that
/// thread calls the allocator after the delay. After a burst (a backfill, a big query) the
/// workers go idle within the second and the pages freed last, most of a burst's
/// transient memory, would stay resident for good. On the issue 12 load (100k series,
/// `docs/benchmarks.md`) RSS 25 s after it: 114–119 MB with 0, 128–136 MB with 10 ms
/// (221–228 MB with mimalloc's second, measured before the slabs of `head/pending.rs`); server CPU per ingested sample is the same with 0 and
/// 10 ms (`ingest_compare`, medians 0.739 and 0.755 µs; it cost 14% before head chunks
/// were cut into slabs, when every chunk was an allocation of its own).
/// `MIMALLOC_PURGE_DELAY` in the environment wins: the option is changed only while it has
/// mimalloc's default value.
#[allow(
    unsafe_code,
    reason = "mi_option_get/set are plain FFI calls; see the SAFETY note"
)]
fn shorten_purge_delay() {
    // SAFETY: both take and return integers; mimalloc reads options at any time, so
    // setting one while the allocator runs is allowed (it is what `mi_option_set` is for).
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MI_DEFAULT_PURGE_DELAY_MS
            && std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[derive(Parser)]
#[command(
    name = "metricsd",
    version,
    about = "A metrics service with an embedded time-series store"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service. Settings: defaults < --config file < ACCESS_* environment < flags
    /// (see docs/configuration.md).
    Serve {
        /// Optional YAML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: flags::SettingFlags,
        /// Check the configuration, print it and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Evaluate a PromQL expression at one instant on a running server (/api/v1/query).
    Query {
        /// The PromQL expression.
        expr: String,
        /// Evaluation time: RFC 3339 or Unix seconds [default: the server's now].
        #[arg(long)]
        time: Option<String>,
        #[command(flatten)]
        client: query::ClientArgs,
    },
    /// Evaluate a PromQL expression over a time range on a running server
    /// (/api/v1/query_range).
    QueryRange {
        /// The PromQL expression.
        expr: String,
        /// Start: RFC 3339 or Unix seconds.
        #[arg(long)]
        start: String,
        /// End: RFC 3339 or Unix seconds.
        #[arg(long)]
        end: String,
        /// Resolution: a duration (15s, 1m) or seconds.
        #[arg(long, default_value = "1m")]
        step: String,
        #[command(flatten)]
        client: query::ClientArgs,
    },
}

/// Exit codes: 0 after a clean shutdown, 1 when the service fails, 2 for bad configuration.
/// `query` and `query-range`: 0 when the server answered the query, 1 otherwise.
fn main() -> ExitCode {
    disable_transparent_huge_pages();
    shorten_purge_delay();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            config,
            flags,
            check_config,
        } => {
            let mut cfg = match Config::load(config.as_deref(), |k| std::env::var(k).ok(), &flags.0) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("metricsd: {e}");
                    return ExitCode::from(2);
                }
            };
            cfg.note_unknown_env_vars(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
            if check_config {
                println!("{cfg:#?}");
                return ExitCode::SUCCESS;
            }
            let provider = if cfg.enable_tracing {
                match metricsd_server::otel::provider() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("metricsd: invalid configuration: ACCESS_ENABLE_TRACING: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                None
            };
            metricsd_server::logging::init(
                &cfg.log_level,
                &cfg.env,
                provider.as_ref().map(metricsd_server::otel::tracer),
            );
            let code = match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "metricsd failed");
                    eprintln!("metricsd: {e:#}");
                    ExitCode::FAILURE
                }
            };
            if let Some(p) = provider {
                // Sends the spans still queued (bounded by the exporter's timeout).
                let _ = p.shutdown();
            }
            code
        }
        Cmd::Query { expr, time, client } => {
            let mut params = vec![("query", expr)];
            if let Some(t) = time {
                params.push(("time", t));
            }
            query::run(&client, "/api/v1/query", params)
        }
        Cmd::QueryRange {
            expr,
            start,
            end,
            step,
            client,
        } => query::run(
            &client,
            "/api/v1/query_range",
            vec![("query", expr), ("start", start), ("end", end), ("step", step)],
        ),
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
        metricsd_server::serve(cfg, listener, shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let int = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = int.await;
                return;
            }
        };
        tokio::select! {
            _ = int => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = int.await;
}
