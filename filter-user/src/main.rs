//! filterctl: see `filterctl --help` and README.md.

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = filterctl::cli::Cli::parse();
    // The daemon says what it does; one-shot commands print their results.
    let level = if matches!(cli.command, filterctl::cli::Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match filterctl::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
