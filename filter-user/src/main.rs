//! filterctl: see `filterctl --help` and README.md.

use anyhow::Context as _;
use clap::Parser as _;
use filterctl::{
    commands::{self, args::Cli},
    sys,
};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `filterctl check FILE | head -1`: a closed pipe ends a one-shot
    // command as it ends any other command-line tool, instead of a panic
    // in println!. Not a daemon, whose sockets must never kill it.
    if !cli.command.is_daemon() {
        // SAFETY: restoring a signal's default disposition has no
        // preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // The daemon says what it does; one-shot commands print their results.
    let level = if cli.command.is_daemon() {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    // Before the runtime starts any thread: setns moves only the calling
    // thread, and the threads it starts afterwards inherit its namespace.
    if let Some(ns) = &cli.netns {
        sys::enter_net_namespace(ns).context("--netns")?;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(commands::run(cli))
}
