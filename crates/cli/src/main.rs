//! The `metricsd` binary: flags, wiring and exit codes.

use clap::{Parser, Subcommand};

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
    /// Run the service (the HTTP server lands with issue 4; today this opens the store).
    Serve {
        /// Where the store keeps its data.
        #[arg(long, default_value = "./data", env = "METRICSD_DATA_DIR")]
        data_dir: std::path::PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { data_dir } => {
            eprintln!("metricsd: no server yet (data dir {})", data_dir.display());
        }
    }
    Ok(())
}
