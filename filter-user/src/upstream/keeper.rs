//! The keeper: a small process (`filterctl upstream keep`, hidden) that
//! serve starts in a session of its own when it first announces a route, so
//! that a SIGKILL of serve does not take it along. While serve runs, it
//! waits. When serve stops cleanly, it finds nothing left and exits. When
//! serve dies with routes announced, it takes the lock (`handover`) and
//! withdraws each route at its deadline, marking it off in the state file,
//! unless a new serve takes over first: SIGTERM makes it hand over and
//! exit without withdrawing anything.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use log::{error, info, warn};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{
    handover::Lock,
    routes::Route,
    speaker,
    state::{self, Held, Owner, Role, UpstreamState},
};
use crate::{state::PinRoot, sys};

/// How often the keeper looks at its serve and the lock while serve runs.
const POLL: Duration = Duration::from_millis(200);
/// How long after a failed withdrawal it tries again.
const RETRY: Duration = Duration::from_secs(5);
/// How long past its deadline it keeps trying a route the speaker refuses
/// to withdraw; then it leaves it listed, for the next serve.
const GIVE_UP: Duration = Duration::from_secs(600);

/// The command line (after the program) that starts a keeper of `iface`'s
/// routes for `serve`.
pub fn command_args(root: &PinRoot, iface: &str, serve: &Owner) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--pin-root".into(), root.path().into()];
    args.extend(["upstream", "keep", "--iface", iface, "--serve"].map(OsString::from));
    args.push(format!("{}:{}", serve.pid, serve.start_ticks).into());
    args
}

/// Starts a keeper of `iface`'s routes for this serve. It runs in this
/// process's network namespace, which it inherits (no --netns: the name
/// may be gone by the time it would enter it).
pub fn spawn(root: &PinRoot, iface: &str) -> std::io::Result<Child> {
    // The binary serve runs, even if an upgrade replaced the file since.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(command_args(root, iface, &Owner::me(Role::Serve)))
        .env_remove("FILTERCTL_NETNS")
        .stdin(Stdio::null());
    sys::own_session(&mut cmd);
    cmd.spawn()
}

/// When a route is due: its deadline, or later if a withdrawal failed.
fn due_at(h: &Held, retry: &BTreeMap<Route, u64>) -> u64 {
    retry
        .get(&h.route)
        .map_or(h.deadline_ns, |&r| r.max(h.deadline_ns))
}

/// The routes due at `now_ns` (CLOCK_MONOTONIC), deadline order.
pub fn due(applied: &[Held], retry: &BTreeMap<Route, u64>, now_ns: u64) -> Vec<Held> {
    let mut due: Vec<Held> = applied
        .iter()
        .filter(|h| due_at(h, retry) <= now_ns)
        .cloned()
        .collect();
    due.sort_by_key(|h| h.deadline_ns);
    due
}

/// When the next of `applied` is due; None when none is.
pub fn next_due(applied: &[Held], retry: &BTreeMap<Route, u64>) -> Option<u64> {
    applied.iter().map(|h| due_at(h, retry)).min()
}

/// Whether, serve being gone and the lock taken, another process has the
/// routes: the state file is gone (a serve that took the lock found nothing
/// to keep), or names a running process other than `serve`. While it still
/// names serve, the lock is serve's own: a killed process shows as a zombie
/// before its last threads have exited and let go of its files.
pub fn taken_over(serve: &Owner, file: &anyhow::Result<Option<UpstreamState>>) -> bool {
    match file {
        Ok(None) => true,
        Ok(Some(s)) => s.owner.is_some_and(|o| o != *serve && o.is_running()),
        Err(_) => false,
    }
}

/// SIGTERM and SIGINT: a new serve takes over (or the service stops).
struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        Ok(Stop {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Sleeps for `d`; true when a signal came first.
    async fn wait(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            _ = self.term.recv() => true,
            _ = self.int.recv() => true,
        }
    }
}

/// `filterctl upstream keep`: waits while `serve` runs, then keeps what it
/// left (see the module's doc).
pub async fn run(root: PinRoot, iface: String, serve: Owner) -> anyhow::Result<()> {
    let mut stop = Stop::new().context("cannot catch SIGTERM")?;
    let path = state::lock_path(&root, &iface);
    let lock = loop {
        let taken = Lock::try_take(&path)
            .with_context(|| format!("cannot take the lock {}", path.display()))?;
        if let Some(lock) = taken {
            break lock;
        }
        if !serve.is_running() && taken_over(&serve, &state::read(&root, &iface)) {
            info!(
                "upstream {iface}: serve (pid {}) is gone and another process holds {}: it has the routes",
                serve.pid,
                path.display()
            );
            return Ok(());
        }
        if stop.wait(POLL).await {
            info!("upstream {iface}: serve stopped: the keeper exits");
            return Ok(());
        }
    };
    keep(&root, &iface, lock, &mut stop).await
}

/// Writes the state, saying so when it cannot (the next serve would
/// withdraw a route twice: harmless).
fn save(root: &PinRoot, st: &UpstreamState) {
    if let Err(e) = state::write(root, st) {
        warn!(
            "upstream {}: cannot write its state file: {e}",
            st.interface
        );
    }
}

/// Withdraws what the state file lists, each route at its deadline, until
/// none is left (or a signal: hand over).
async fn keep(root: &PinRoot, iface: &str, lock: Lock, stop: &mut Stop) -> anyhow::Result<()> {
    let mut st = match state::read(root, iface) {
        Ok(Some(st)) if !st.applied.is_empty() => st,
        Ok(_) => {
            // Serve stopped cleanly, or died between floods: nothing to
            // keep, and no serve to describe.
            state::remove(root, iface);
            lock.release(true);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let Some(config) = st.speaker_config.clone() else {
        anyhow::bail!(
            "upstream {iface}: the state file does not say which speaker holds its {} routes (an older filterctl wrote it): the next serve takes them over",
            st.applied.len()
        );
    };
    let gone = st
        .owner
        .map_or_else(|| "serve".to_string(), |o| format!("serve (pid {})", o.pid));
    st.owner = Some(Owner::me(Role::Keeper));
    save(root, &st);
    warn!(
        "upstream {iface}: {gone} stopped without withdrawing {} routes: withdrawing each at its deadline, unless a new serve takes them over first",
        st.applied.len()
    );
    let mut speaker = speaker::connect(&config);
    let mut retry = BTreeMap::new();
    let mut given_up = BTreeSet::new();
    loop {
        let now = sys::monotonic_coarse_ns();
        for h in due(&st.applied, &retry, now) {
            let late = Duration::from_nanos(now.saturating_sub(h.deadline_ns));
            match speaker.withdraw(&h.route) {
                Ok(()) => {
                    warn!(
                        "upstream {iface}: withdrew {} at its deadline ({:.1} s ago), with no serve to see its flood",
                        h.route,
                        late.as_secs_f64()
                    );
                    let text = h.route.to_string();
                    st.applied.retain(|a| a.route != h.route);
                    st.routes.retain(|r| r.route != text);
                    retry.remove(&h.route);
                    save(root, &st);
                }
                Err(e) if late >= GIVE_UP => {
                    error!(
                        "upstream {iface}: giving up on {}, which the speaker would not withdraw for {GIVE_UP:?}: {e}; the next serve tries again",
                        h.route
                    );
                    retry.remove(&h.route);
                    given_up.insert(h.route);
                }
                Err(e) => {
                    error!(
                        "upstream {iface}: cannot withdraw {} (trying again in {RETRY:?}): {e}",
                        h.route
                    );
                    retry.insert(h.route, now + RETRY.as_nanos() as u64);
                }
            }
        }
        let pending: Vec<Held> = st
            .applied
            .iter()
            .filter(|h| !given_up.contains(&h.route))
            .cloned()
            .collect();
        let Some(next) = next_due(&pending, &retry) else {
            if st.applied.is_empty() {
                state::remove(root, iface);
                lock.release(true);
            }
            return Ok(());
        };
        if stop
            .wait(Duration::from_nanos(next.saturating_sub(now)))
            .await
        {
            info!(
                "upstream {iface}: leaving its {} routes to the next serve (SIGTERM)",
                st.applied.len()
            );
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{rules::prefixes::parse_prefix, upstream::routes::tests::flow};

    const S: u64 = 1_000_000_000;

    fn held() -> Vec<Held> {
        vec![
            Held {
                route: Route::Blackhole {
                    dst: parse_prefix("192.0.2.1/32").unwrap(),
                },
                deadline_ns: 30 * S,
            },
            Held {
                route: Route::FlowSpec(flow("192.0.2.1/32", None)),
                deadline_ns: 10 * S,
            },
        ]
    }

    #[test]
    fn each_route_is_due_at_its_own_deadline() {
        let h = held();
        let none = BTreeMap::new();
        assert!(due(&h, &none, 10 * S - 1).is_empty());
        assert_eq!(next_due(&h, &none), Some(10 * S));
        assert_eq!(due(&h, &none, 10 * S), vec![h[1].clone()]);
        // Both overdue: the earlier deadline first.
        assert_eq!(due(&h, &none, 31 * S), vec![h[1].clone(), h[0].clone()]);
        assert_eq!(next_due(&[], &none), None);
    }

    #[test]
    fn a_lock_serve_left_taken_is_someone_elses_once_the_file_names_them() {
        // This test's process stands for the new holder; serve is gone.
        let serve = Owner {
            role: Role::Serve,
            pid: u32::MAX,
            start_ticks: 1,
        };
        let named = |owner| {
            Ok(Some(UpstreamState {
                owner,
                ..UpstreamState::default()
            }))
        };
        assert!(taken_over(&serve, &Ok(None)));
        assert!(taken_over(&serve, &named(Some(Owner::me(Role::Serve)))));
        assert!(taken_over(&serve, &named(Some(Owner::me(Role::Keeper)))));
        // Still serve's file: its threads may hold the lock a while yet.
        assert!(!taken_over(&serve, &named(Some(serve))));
        assert!(!taken_over(&serve, &named(None)));
        assert!(!taken_over(&serve, &Err(anyhow::anyhow!("unreadable"))));
    }

    #[test]
    fn a_failed_withdrawal_is_due_again_after_its_retry_time() {
        let h = held();
        let retry = BTreeMap::from([(h[1].route.clone(), 15 * S)]);
        assert!(due(&h, &retry, 12 * S).is_empty());
        assert_eq!(next_due(&h, &retry), Some(15 * S));
        assert_eq!(due(&h, &retry, 15 * S), vec![h[1].clone()]);
    }
}
