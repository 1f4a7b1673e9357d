//! The command layer: `args` holds the command line; each command is an
//! args struct (its options) and a function beside it that does the work
//! through the library, prints what it found (a render function beside it
//! turns that into text) and returns the exit status. `run` only
//! dispatches.
//!
//! Imports run one way: this file uses `args` and the command files,
//! `args` uses the args structs of the command files, and a command file
//! uses only `common` and `table` (what commands share), never `args`,
//! this file or another command.

mod apply;
pub mod args;
mod bans;
mod capture;
mod check;
mod common;
mod diff;
mod doctor;
mod load;
mod replay;
mod serve;
mod stats;
mod status;
mod table;
mod upstream;

use self::args::{Cli, Command};

pub use self::common::DEFAULT_RULES;

/// Runs a command; its exit status is 0 unless the command says otherwise
/// (`apply`'s codes, `doctor`'s 1).
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let root = cli.pin_root();
    match cli.command {
        Command::Load(a) => load::load(&root, a),
        Command::Apply(a) => apply::run(&root, a),
        Command::Reload(a) => load::reload(&root, a),
        Command::Diff(a) => diff::run(&root, a),
        Command::Mode(a) => load::mode(&root, a),
        Command::Unload(a) => load::unload(&root, a),
        Command::Status(a) => status::run(&root, a),
        Command::Stats(a) => stats::run(&root, a),
        Command::Ban(a) => bans::ban(&root, a),
        Command::Doctor(a) => doctor::run(&root, a),
        Command::Unban(a) => bans::unban(&root, a),
        Command::Top(a) => bans::top(&root, a),
        Command::Capture(a) => capture::run(root, a).await,
        Command::Replay(a) => replay::run(a),
        Command::Serve(a) => serve::run(root, a).await,
        Command::Upstream(a) => upstream::run(&root, a).await,
        Command::Check(a) => check::run(a),
    }
}
