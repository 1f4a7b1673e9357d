//! The import side of `serve`: for each watched interface whose file has
//! `[upstream.import]`, reads the FlowSpec RIB of the GoBGP speaker at its
//! interval, judges every path (`upstream::import`) and brings the running
//! rules in step with the accepted ones through the same atomic reload as
//! the adaptive blocks (the file's rules, the blocks that run, and one
//! `flowspec-...` rule per route). A route withdrawn from the RIB goes at
//! the next read. One log line per route when it is imported, refused (with
//! its reason) or removed. When the speaker can't be read, what runs stays.

use std::{collections::BTreeMap, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use log::{debug, error, info, warn};

use super::watch::{FileSets, Watch};
use crate::{
    filter::{guard::neverban, lifecycle::reload, observe::status},
    lockout,
    rules::{
        RuleSet,
        adaptive::with_blocks,
        imports::{FlowImport, with_imports},
        upstream::{ImportConfig, SpeakerConfig},
    },
    state::PinRoot,
    upstream::{
        import::{self, Host, Plan, RibPath},
        routes::Route,
        sources, state,
    },
};

/// How often a file without `[upstream.import]` is looked at again.
const IDLE: Duration = Duration::from_secs(2);

/// One watched interface's imports.
struct Imports {
    watch: Watch,
    /// What was last logged for each route: its reason, or "" when imported.
    said: BTreeMap<String, String>,
    /// The speaker's last error, logged once.
    failed: Option<String>,
}

/// Runs until aborted.
pub(crate) async fn watch_imports(root: PinRoot, watches: Vec<Watch>, files: FileSets) {
    let tasks: Vec<_> = watches
        .into_iter()
        .map(|watch| {
            let (root, files) = (root.clone(), files.clone());
            tokio::spawn(async move {
                let mut me = Imports {
                    watch,
                    said: BTreeMap::new(),
                    failed: None,
                };
                loop {
                    let (r, f) = (root.clone(), files.clone());
                    let step = tokio::task::spawn_blocking(move || {
                        let wait = me.step(&r, &f);
                        (me, wait)
                    });
                    let wait;
                    (me, wait) = match step.await {
                        Ok(back) => back,
                        Err(e) => return error!("FlowSpec import stopped: {e}"),
                    };
                    tokio::time::sleep(wait).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// The speaker and settings of `set`, when it imports.
fn settings(set: &RuleSet) -> Option<(SpeakerConfig, ImportConfig)> {
    let u = set.upstream.as_ref()?;
    Some((u.speaker.clone(), u.import.clone()?))
}

/// `gobgp -u HOST -p PORT global rib -a FAMILY -j`, both FlowSpec families.
fn read_rib(speaker: &SpeakerConfig) -> anyhow::Result<Vec<RibPath>> {
    let SpeakerConfig::Gobgp {
        command,
        host,
        port,
    } = speaker
    else {
        bail!("[upstream.import] needs speaker = \"gobgp\"");
    };
    let mut out = Vec::new();
    for family in ["ipv4-flowspec", "ipv6-flowspec"] {
        let got = Command::new(command)
            .args(["-u", host, "-p", &port.to_string()])
            .args(["global", "rib", "-a", family, "-j"])
            .output()
            .with_context(|| format!("cannot run {command}"))?;
        if !got.status.success() {
            bail!(
                "{command} global rib -a {family}: {}",
                String::from_utf8_lossy(&got.stderr).trim()
            );
        }
        out.extend(
            import::parse_rib(&String::from_utf8_lossy(&got.stdout)).map_err(anyhow::Error::msg)?,
        );
    }
    Ok(out)
}

/// What this host is on `iface`: its addresses, who it must never cut off,
/// and the FlowSpec routes its own upstream worker announces.
fn host(root: &PinRoot, iface: &str, set: &RuleSet) -> Host {
    let own = state::read(root, iface)
        .ok()
        .flatten()
        .map_or_else(Vec::new, |s| {
            s.applied
                .into_iter()
                .filter_map(|h| match h.route {
                    Route::FlowSpec(f) => Some(f),
                    Route::Blackhole { .. } => None,
                })
                .collect()
        });
    Host {
        addresses: sources::host_prefixes(iface),
        protected: lockout::protected_addresses(),
        never_ban: neverban::never_ban_set(set, &neverban::HOST)
            .into_iter()
            .collect(),
        own,
    }
}

impl Imports {
    /// One read of the RIB and what follows; how long until the next.
    fn step(&mut self, root: &PinRoot, files: &FileSets) -> Duration {
        let iface = self.watch.iface.clone();
        let set = files.lock().get(&iface).cloned();
        let settings = set.as_ref().and_then(settings);
        let Some((speaker, cfg)) = settings else {
            self.said.clear();
            self.sync(root, files, Vec::new(), "[upstream.import] is off");
            return IDLE;
        };
        let wait = Duration::from_nanos(cfg.interval_ns);
        let paths = match read_rib(&speaker) {
            Ok(p) => p,
            Err(e) => {
                let e = format!("{e:#}");
                if self.failed.as_ref() != Some(&e) {
                    error!(
                        "{iface}: cannot read the speaker's FlowSpec routes (the imported rules that run stay): {e}"
                    );
                }
                self.failed = Some(e);
                return wait;
            }
        };
        self.failed = None;
        let Some(set) = set else { return wait };
        let plan = import::plan(&paths, &cfg, &host(root, &iface, &set));
        self.report(&plan);
        self.sync(root, files, plan.accepted, "withdrawn by the speaker");
        wait
    }

    /// One line per route whose verdict changed.
    fn report(&mut self, plan: &Plan) {
        let iface = &self.watch.iface;
        let mut now = BTreeMap::new();
        for i in &plan.accepted {
            if self.said.get(&i.route).is_none_or(|r| !r.is_empty()) {
                let what = if i.limit_pps == 0 {
                    "drop".to_string()
                } else {
                    format!("limit to {} packets/s", i.limit_pps)
                };
                info!(
                    "{iface}: FlowSpec route from {} imported as rule {} ({what}): {}",
                    i.peer, i.name, i.route
                );
            }
            now.insert(i.route.clone(), String::new());
        }
        for r in &plan.refused {
            if self.said.get(&r.route) != Some(&r.reason) {
                warn!("{iface}: FlowSpec route {} refused: {}", r.route, r.reason);
            }
            now.insert(r.route.clone(), r.reason.clone());
        }
        self.said = now;
    }

    /// Reloads the interface when the imports that run differ from
    /// `desired`; `why` says why those that go are removed.
    fn sync(&mut self, root: &PinRoot, files: &FileSets, desired: Vec<FlowImport>, why: &str) {
        let iface = self.watch.iface.clone();
        let files = files.lock();
        let Some(set) = files.get(&iface) else { return };
        let running = match status::status(root, &iface) {
            Ok(s) => s,
            Err(e) => return debug!("{iface}: FlowSpec import skipped: {e:#}"),
        };
        if running.flowspec_imports == desired {
            return;
        }
        let result = (|| -> anyhow::Result<(u32, Vec<FlowImport>)> {
            let base = match with_blocks(set, &running.adaptive_blocks) {
                Ok(b) if !running.adaptive_blocks.is_empty() => b,
                _ => set.clone(),
            };
            let (with, fit) = fitting(&base, desired.clone());
            if fit.len() < desired.len() {
                for i in desired.iter().filter(|i| !fit.contains(i)) {
                    warn!(
                        "{iface}: FlowSpec route {} refused: the rule engine has no room for rule {} beside the file's rules",
                        i.route, i.name
                    );
                }
            }
            if running.flowspec_imports == fit {
                return Ok((running.generation, fit));
            }
            Ok((reload::reload(root, &iface, &with, &self.watch.rules)?, fit))
        })();
        match result {
            Ok((generation, fit)) => {
                for i in running.flowspec_imports.iter().filter(|i| !fit.contains(i)) {
                    info!("{iface}: rule {} removed ({why}): {}", i.name, i.route);
                }
                debug!(
                    "{iface}: generation {generation} runs {} imported FlowSpec routes",
                    fit.len()
                );
            }
            Err(e) => error!(
                "{iface}: imported FlowSpec routes not installed, the running rules stay: {e:#}"
            ),
        }
    }
}

/// `base` with as many of `imports` as its chains have room for, in order.
fn fitting(base: &RuleSet, imports: Vec<FlowImport>) -> (RuleSet, Vec<FlowImport>) {
    if let Ok(all) = with_imports(base, &imports) {
        return (all, imports);
    }
    let mut fit: Vec<FlowImport> = Vec::new();
    let mut with = base.clone();
    for i in imports {
        fit.push(i);
        match with_imports(base, &fit) {
            Ok(w) => with = w,
            Err(_) => {
                fit.pop();
            }
        }
    }
    (with, fit)
}
