//! The rule-file side of `serve`: each watched interface's rules follow a
//! file. The file is checked every second, off the runtime (`fingerprint`:
//! its `stat`, its bytes when that changed, and the size and times of the
//! list files it names), and reloaded when its content digest differs from
//! what runs; every watched file is reloaded on SIGHUP. Reloads go through
//! the same `apply_rules` as `filterctl reload`, which reads the file as
//! `check` does: a FIFO, a device or a huge file at the path is refused,
//! logged once and counted as an invalid reload. An interface whose
//! filter is gone gets its file loaded again, unless an operator's `unload`
//! left it off on purpose (`restore`).

mod fingerprint;
mod restore;
mod sets;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::bail;
use log::{debug, error, info, warn};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::signal::unix::Signal;

pub(crate) use self::sets::FileSets;
pub use self::sets::Watch;
use self::{
    fingerprint::Fingerprint,
    restore::{Gone, Step},
};
use super::catalogue::{Kept, Series};
use crate::{
    filter::{
        guard::neverban,
        lifecycle::{
            apply::{Applied, ApplyError, Guard, apply_rules},
            reload::ReloadError,
            state_maps::ReloadOptions,
        },
        observe::status,
    },
    state::PinRoot,
    sys,
};

/// How often the watched rule files are checked.
const POLL: Duration = Duration::from_secs(1);
/// How often the never-ban set is rebuilt from the host's facts (gateways,
/// resolvers, time servers, the SSH client), in polls.
const NEVER_BAN_POLLS: u64 = 30;

/// A `--watch` value that is not `IF=PATH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: write IFACE=RULES_FILE, e.g. eth0=/etc/filterctl/rules.toml")]
pub(crate) struct WatchSyntax(String);

/// Parses `IF=PATH` (the `--watch` form).
pub(crate) fn parse_watch(s: &str) -> Result<Watch, WatchSyntax> {
    match s.split_once('=') {
        Some((iface, path)) if !iface.is_empty() && !path.is_empty() => Ok(Watch {
            iface: iface.to_string(),
            rules: PathBuf::from(path),
        }),
        _ => Err(WatchSyntax(s.to_string())),
    }
}

/// The watched pairs from `--iface IF --rules PATH` pairs (in the order
/// given) and `--watch IF=PATH`; each interface at most once.
pub(crate) fn watches(
    ifaces: Vec<String>,
    rules: Vec<PathBuf>,
    more: Vec<Watch>,
) -> anyhow::Result<Vec<Watch>> {
    if ifaces.len() != rules.len() {
        bail!(
            "serve takes --iface and --rules in pairs (--iface IF --rules FILE, repeatable): got {} --iface and {} --rules",
            ifaces.len(),
            rules.len()
        );
    }
    let all: Vec<Watch> = ifaces
        .into_iter()
        .zip(rules)
        .map(|(iface, rules)| Watch { iface, rules })
        .chain(more)
        .collect();
    for (i, w) in all.iter().enumerate() {
        if all[..i].iter().any(|o| o.iface == w.iface) {
            bail!("{} is watched twice: one rule file per interface", w.iface);
        }
    }
    Ok(all)
}

/// What the daemon's own reloads show on /metrics (declared in
/// `metrics::METRICS`): how many by result, and when the last one ran and
/// whether it enforces.
#[derive(Clone, Debug)]
pub(crate) struct ReloadMetrics {
    /// By interface and result: ok, invalid (the file did not parse or the
    /// lockout guard refused it) or failed (the kernel or the pins refused
    /// it).
    count: Series<Counter>,
    last_time: Series<Gauge>,
    last_ok: Series<Gauge>,
}

impl ReloadMetrics {
    pub(crate) fn new(kept: &Kept) -> ReloadMetrics {
        ReloadMetrics {
            count: kept.counter("reloads"),
            last_time: kept.gauge("last_reload_timestamp_seconds"),
            last_ok: kept.gauge("last_reload_success"),
        }
    }

    /// Every series of `iface` from the start, at 0, so that rates work.
    fn start(&self, iface: &str) {
        for result in ["ok", "invalid", "failed"] {
            drop(self.count.get(&[iface, result]));
        }
    }

    fn record(&self, iface: &str, result: &str) {
        self.count.get(&[iface, result]).inc();
        self.last(iface, result == "ok");
    }

    /// A check that found the file's rules running already (a broken file
    /// restored): nothing reloaded, but the file enforces, so a failure
    /// shown before is over.
    fn unchanged(&self, iface: &str) {
        self.last(iface, true);
    }

    fn last(&self, iface: &str, ok: bool) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.last_time.get(&[iface]).set(now);
        self.last_ok.get(&[iface]).set(i64::from(ok));
    }
}

/// What an attempt to bring an interface in step with its file did.
enum Outcome {
    /// The file's digest is what runs already.
    Unchanged,
    Reloaded,
    /// Unreadable, invalid or refused by the lockout guard: nothing loaded.
    Invalid,
    /// The reload itself failed.
    Failed,
    /// Out of file descriptors: nothing loaded, and the next check tries
    /// again even if the files stay as they are.
    Retry,
}

/// Reloads `w` with its file, keeping the adaptive blocks and imported
/// routes that run, unless
/// the file's digest is what runs (or always, when `force`); logs what it
/// did. Blocking: run it off the runtime.
fn apply(root: &PinRoot, w: &Watch, force: bool, files: &FileSets) -> Outcome {
    let (iface, file) = (w.iface.as_str(), w.rules.display());
    let mut files = files.lock();
    // What runs now, read from the pins: an operator's `filterctl reload`
    // may have changed it since this daemon last looked.
    let now = status::status(root, iface).ok();
    let running = now
        .as_ref()
        .filter(|_| !force)
        .map(|s| s.rules_digest.as_str());
    let added = now.as_ref().map(status::Status::added).unwrap_or_default();
    let result = apply_rules(
        root,
        iface,
        &w.rules,
        Guard::Check,
        running,
        &added,
        ReloadOptions::default(),
    );
    if let Ok((set, _)) = &result {
        files.insert(iface.to_string(), set.clone());
    }
    match result {
        Ok((_, Applied::Unchanged)) => {
            debug!("{iface}: {file} changed on disk but its content is what runs: nothing to do");
            Outcome::Unchanged
        }
        Ok((set, Applied::Reloaded { generation })) => {
            info!(
                "{iface}: reloaded {file}: generation {generation}, {} rules, digest {}",
                set.rules.len(),
                &set.digest_hex()[..16]
            );
            Outcome::Reloaded
        }
        Err(e) if out_of_files(&e) => {
            error!("{iface}: reload of {file} failed, retried at the next check: {e}");
            Outcome::Retry
        }
        Err(e) if e.is_invalid() => {
            error!("{iface}: {file} not loaded, the running rules stay: {e}");
            Outcome::Invalid
        }
        Err(e) => {
            error!("{iface}: reload of {file} failed: {e}");
            Outcome::Failed
        }
    }
}

/// Whether `e` comes from running out of file descriptors (at the
/// open-file limit) rather than from the file or the kernel's verdict.
fn out_of_files(e: &ApplyError) -> bool {
    let io = |e: &(dyn std::error::Error + 'static)| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(sys::is_out_of_files)
    };
    match e {
        ApplyError::Reload(
            ReloadError::NotSwitched { cause, .. } | ReloadError::AfterSwitch { cause, .. },
        ) => cause.chain().any(io),
        other => std::iter::successors(Some(other as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .any(io),
    }
}

struct Watched {
    watch: Watch,
    seen: Fingerprint,
    /// Whether a reload was recorded: before that, the reload gauges stay
    /// absent, even when the first check finds the file running.
    recorded: bool,
    /// Whether its filter was gone at the last look, and why.
    gone: Gone,
}

/// Checks the watched files every second and reloads on change, and all
/// of them on SIGHUP. Runs until aborted.
pub(crate) async fn watch_rules(
    root: PinRoot,
    watches: Vec<Watch>,
    mut hup: Signal,
    reloads: ReloadMetrics,
    files: FileSets,
) {
    let mut watched: Vec<Watched> = watches
        .into_iter()
        .map(|watch| {
            // Without pins the first check loads the file (`restore`).
            let pinned = root.iface_dir(&watch.iface).is_dir();
            if pinned && let Err(e) = status::status(&root, &watch.iface) {
                warn!(
                    "{}: cannot read which rules run ({e:#}): the first check reloads {}",
                    watch.iface,
                    watch.rules.display()
                );
            }
            reloads.start(&watch.iface);
            Watched {
                watch,
                seen: Fingerprint::default(),
                recorded: false,
                gone: Gone::default(),
            }
        })
        .collect();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for polls in 0u64.. {
        let force = tokio::select! {
            _ = tick.tick() => false,
            _ = hup.recv() => {
                info!("SIGHUP: reloading every watched rule file");
                true
            }
        };
        if polls % NEVER_BAN_POLLS == NEVER_BAN_POLLS - 1 {
            refresh_never_ban(&root, &watched).await;
        }
        for w in &mut watched {
            if let Step::Absent(tried) = restore::step(&root, &w.watch, &mut w.gone, &files).await {
                if let Some(result) = tried {
                    reloads.record(&w.watch.iface, result);
                    w.recorded = true;
                }
                continue;
            }
            let first = w.seen.is_new();
            if !look(w).await && !force {
                continue;
            }
            if !force && !first {
                info!("{}: {} changed", w.watch.iface, w.watch.rules.display());
            }
            let (root, watch, files) = (root.clone(), w.watch.clone(), files.clone());
            let outcome = tokio::task::spawn_blocking(move || apply(&root, &watch, force, &files))
                .await
                .unwrap_or_else(|e| {
                    error!("{}: the reload task failed: {e}", w.watch.iface);
                    Outcome::Failed
                });
            let result = match outcome {
                Outcome::Unchanged => {
                    if w.recorded {
                        reloads.unchanged(&w.watch.iface);
                    }
                    continue;
                }
                Outcome::Reloaded => "ok",
                Outcome::Invalid => "invalid",
                Outcome::Failed => "failed",
                Outcome::Retry => {
                    w.seen = Fingerprint::default();
                    "failed"
                }
            };
            reloads.record(&w.watch.iface, result);
            w.recorded = true;
        }
    }
}

/// Whether `w`'s files changed since the last look, looked at on a
/// blocking thread: a `stat` of a file on a hung mount, or the read of one
/// just written, never holds the runtime, which serves /metrics and
/// catches the signals.
async fn look(w: &mut Watched) -> bool {
    let (mut seen, path) = (std::mem::take(&mut w.seen), w.watch.rules.clone());
    match tokio::task::spawn_blocking(move || (seen.changed(&path), seen)).await {
        Ok((changed, seen)) => {
            w.seen = seen;
            changed
        }
        Err(e) => {
            // The next look starts afresh, as the first.
            error!("{}: the check of the rule file failed: {e}", w.watch.iface);
            false
        }
    }
}

/// Rebuilds every watched interface's never-ban set (the host's resolvers
/// or gateways may have changed since the load).
async fn refresh_never_ban(root: &PinRoot, watched: &[Watched]) {
    for w in watched {
        let (root, iface) = (root.clone(), w.watch.iface.clone());
        let done = tokio::task::spawn_blocking(move || neverban::refresh(&root, &iface)).await;
        match done {
            Ok(Ok(n)) => debug!("{}: never-ban set refreshed: {n} entries", w.watch.iface),
            Ok(Err(e)) => warn!("{}: cannot refresh the never-ban set: {e:#}", w.watch.iface),
            Err(e) => error!("{}: the never-ban refresh failed: {e}", w.watch.iface),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_pairs() {
        let w = parse_watch("eth0=/etc/f/rules.toml").unwrap();
        assert_eq!(
            (w.iface.as_str(), w.rules.to_str().unwrap()),
            ("eth0", "/etc/f/rules.toml")
        );
        for bad in ["eth0", "=x", "eth0="] {
            assert!(
                parse_watch(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("IFACE=RULES_FILE")
            );
        }
        let all = watches(
            vec!["a".into(), "b".into()],
            vec!["ra".into(), "rb".into()],
            vec![parse_watch("c=rc").unwrap()],
        )
        .unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|w| format!("{}={}", w.iface, w.rules.display()))
            .collect();
        assert_eq!(names, ["a=ra", "b=rb", "c=rc"]);
        let err = watches(vec!["a".into()], vec![], vec![]).unwrap_err();
        assert!(err.to_string().contains("in pairs"), "{err}");
        let err = watches(
            vec!["a".into()],
            vec!["x".into()],
            vec![parse_watch("a=y").unwrap()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("watched twice"), "{err}");
    }

    #[test]
    fn a_restored_file_ends_a_failed_reload() {
        let kept = Kept::register(
            &mut prometheus_client::registry::Registry::default(),
            crate::serve::metrics::METRICS,
        );
        let m = ReloadMetrics::new(&kept);
        m.start("eth0");
        m.record("eth0", "invalid");
        assert_eq!(m.last_ok.get(&["eth0"]).get(), 0);
        m.unchanged("eth0");
        assert_eq!(m.last_ok.get(&["eth0"]).get(), 1, "the alert clears");
        let counts = ["ok", "invalid", "failed"].map(|r| m.count.get(&["eth0", r]).get());
        assert_eq!(counts, [0, 1, 0], "nothing was reloaded");
    }
}
