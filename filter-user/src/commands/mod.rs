//! The command layer: `args` holds the command line, each command is one
//! function that does the work through the library and returns what it
//! found, and a render function beside it turns that into text or JSON.
//! `run` only dispatches.

mod apply;
pub mod args;
mod bans;
mod capture;
mod check;
mod diff;
mod doctor;
mod load;
mod replay;
mod stats;
mod status;
mod table;
mod upstream;

use self::args::{Cli, Command};
use crate::state::PinRoot;

pub use self::load::DEFAULT_RULES;

/// Runs a command; the exit status is 0 unless the command says otherwise
/// (`apply`'s codes).
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let root = cli.pin_root();
    if let Command::Apply {
        iface,
        rules,
        mode,
        force,
        json,
        exit_zero,
    } = cli.command
    {
        let code = apply::apply(&root, &iface, &rules, mode, force, json)?;
        return Ok(if exit_zero { 0 } else { code });
    }
    if let Command::Doctor { json } = cli.command {
        return doctor::doctor(&root, json);
    }
    dispatch(root, cli.command).await.map(|()| 0)
}

async fn dispatch(root: PinRoot, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Apply { .. } | Command::Doctor { .. } => {
            unreachable!("run handles apply and doctor")
        }
        Command::Serve {
            listen,
            iface,
            rules,
            watch,
        } => {
            let watches = crate::serve::watch::watches(iface, rules, watch)?;
            crate::serve::serve(root, listen, watches).await
        }
        Command::Load {
            iface,
            rules,
            mode,
            force,
        } => load::load(&root, &iface, rules.as_deref(), mode, force),
        Command::Reload {
            iface,
            rules,
            force,
            reset_state,
        } => load::reload(&root, &iface, &rules, force, reset_state),
        Command::Diff { iface, rules, json } => diff::diff(&root, &iface, &rules, json),
        Command::Mode { iface, mode } => load::mode(&root, &iface, mode),
        Command::Unload { iface, all } => load::unload(&root, iface, all),
        Command::Status { json } => status::status(&root, json),
        Command::Stats { iface, json, watch } => stats::stats(&root, iface.as_deref(), json, watch),
        Command::Ban {
            target,
            duration,
            iface,
            force,
        } => bans::ban(&root, &target, &duration, iface, force),
        Command::Unban { target, iface } => bans::unban(&root, &target, iface),
        Command::Top { iface, n, json } => bans::top(&root, iface, n, json),
        Command::Replay {
            rules,
            capture,
            json,
            verbose,
        } => replay::replay(&rules, &capture, json, verbose),
        Command::Check { paths, strict } => check::check(&paths, strict),
        Command::Upstream { iface, json } => upstream::upstream(&root, iface, json),
        Command::Capture {
            iface,
            reasons,
            rule,
            sample,
            max_pps,
            snaplen,
            write,
            duration,
            count,
        } => {
            let sel = capture::selection(&reasons, rule, sample, max_pps, snaplen)?;
            let stop = capture::Stop { duration, count };
            capture::capture(root, iface, sel, write, stop).await
        }
    }
}

/// The named interface, or every loaded one.
fn interfaces(root: &PinRoot, iface: Option<String>) -> anyhow::Result<Vec<String>> {
    let all = match iface {
        Some(i) => vec![i],
        None => root.interfaces()?,
    };
    if all.is_empty() {
        anyhow::bail!("no filter loaded{}", elsewhere(root));
    }
    Ok(all)
}

/// Where else filters run, for a "no filter loaded" that would mislead:
/// the network namespaces with their own folder under this root.
fn elsewhere(root: &PinRoot) -> String {
    let names = root.netns_roots();
    if names.is_empty() {
        return String::new();
    }
    format!(
        " here; network namespaces {} have filters (use `filterctl --netns NAME`)",
        names.join(", ")
    )
}
