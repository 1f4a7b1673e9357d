//! Who acts on an interface's routes: a lock beside the state file that
//! one process holds at a time (a serve, or the keeper a killed serve left
//! behind), so that two never announce or withdraw the same route; and what
//! a serve that takes the lock does with the routes it finds listed.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    routes::Route,
    speaker,
    state::{Held, Owner, Role, UpstreamState},
};
use crate::{
    rules::upstream::{SpeakerConfig, UpstreamConfig},
    sys,
};

/// How long a serve waits for a keeper it asked to hand over: the keeper
/// finishes the speaker call it is in, if any, and exits.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(2);

/// The lock, held until released or dropped (or its process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// The lock at `path` (created when missing), unless another process
    /// holds it.
    pub fn try_take(path: &Path) -> io::Result<Option<Lock>> {
        loop {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(e),
            }
            // The holder before us may have removed the file as it let go:
            // a lock on a removed file locks nothing, take the new one.
            let here = file.metadata()?;
            match std::fs::metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == (here.dev(), here.ino()) => {
                    return Ok(Some(Lock {
                        _file: file,
                        path: path.to_path_buf(),
                    }));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Lets go; with `remove`, removes the file first (and its folder if
    /// that was the last file in it), for a holder that leaves nothing
    /// behind.
    pub fn release(self, remove: bool) {
        if remove {
            let _ = std::fs::remove_file(&self.path);
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Whether a serve got the lock.
#[derive(Debug)]
pub enum TakeOver {
    Taken(Lock),
    /// Who holds it, in words.
    Busy(String),
}

/// Takes the lock at `path`. When a keeper holds it (`owner`, from the
/// state file, says which process), asks it to hand over (SIGTERM) and
/// waits for it at most [`HANDOVER_WAIT`]: the routes it keeps become this
/// serve's without being withdrawn.
pub fn take_over(path: &Path, owner: Option<Owner>) -> io::Result<TakeOver> {
    if let Some(lock) = Lock::try_take(path)? {
        return Ok(TakeOver::Taken(lock));
    }
    let who = match owner.filter(Owner::is_running) {
        Some(o) if o.role == Role::Keeper => {
            // It may have exited since: the lock tells.
            let _ = sys::terminate(o.pid);
            let asked = Instant::now();
            while asked.elapsed() < HANDOVER_WAIT {
                std::thread::sleep(Duration::from_millis(20));
                if let Some(lock) = Lock::try_take(path)? {
                    return Ok(TakeOver::Taken(lock));
                }
            }
            format!(
                "the keeper of a serve that died (pid {}), asked to hand over, still",
                o.pid
            )
        }
        Some(o) => format!("another filterctl serve (pid {})", o.pid),
        // A keeper that took the lock a moment ago and has not said so in
        // the file yet: the next step finds it there.
        None => "another filterctl process".to_string(),
    };
    Ok(TakeOver::Busy(who))
}

/// What becomes of the routes a serve before this one left announced.
#[derive(Debug, PartialEq, Eq)]
pub enum Adoption {
    Nothing,
    /// Same speaker, and this serve announces: they stay announced, each
    /// withdrawn at its deadline unless its flood goes on.
    Keep(Vec<Held>),
    /// The rule file now names another speaker, a dry run, or no
    /// `[upstream]`: withdrawn at once through the speaker that holds
    /// them, as a reload saying the same would.
    Withdraw(SpeakerConfig, Vec<Route>),
    /// Listed by an older filterctl, which did not describe its speaker,
    /// and not this serve's (by name): nothing here can withdraw them.
    Unknown(String, Vec<Route>),
}

/// What the rule set now running (`config`: its `[upstream]`) makes of the
/// routes `left` lists.
pub fn adoption(left: &UpstreamState, config: Option<&UpstreamConfig>) -> Adoption {
    if left.applied.is_empty() {
        return Adoption::Nothing;
    }
    let routes = || left.applied.iter().map(|h| h.route.clone()).collect();
    let same = |c: &UpstreamConfig| match &left.speaker_config {
        Some(s) => *s == c.speaker,
        None => left.speaker == speaker::name(&c.speaker),
    };
    match (config, &left.speaker_config) {
        (Some(c), _) if same(c) && !c.dry_run => Adoption::Keep(left.applied.clone()),
        (_, Some(s)) => Adoption::Withdraw(s.clone(), routes()),
        (Some(c), None) if same(c) => Adoption::Withdraw(c.speaker.clone(), routes()),
        _ => Adoption::Unknown(left.speaker.clone(), routes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        rules::{self, prefixes::parse_prefix},
        upstream::routes::tests::flow,
    };

    fn gobgp(port: u16) -> SpeakerConfig {
        SpeakerConfig::Gobgp {
            command: "gobgp".into(),
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn config(speaker: SpeakerConfig, dry_run: bool) -> UpstreamConfig {
        let set = rules::parse(
            "t.toml",
            "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 1900\naction = \"drop\"\n\
             [upstream]\nspeaker = \"gobgp\"\napi = \"127.0.0.1:50051\"\n",
        )
        .unwrap();
        UpstreamConfig {
            speaker,
            dry_run,
            ..set.upstream.unwrap()
        }
    }

    fn left(speaker: Option<SpeakerConfig>) -> UpstreamState {
        UpstreamState {
            speaker: "gobgp 127.0.0.1:50051".into(),
            speaker_config: speaker,
            applied: vec![
                Held {
                    route: Route::FlowSpec(flow("192.0.2.1/32", None)),
                    deadline_ns: 7,
                },
                Held {
                    route: Route::Blackhole {
                        dst: parse_prefix("192.0.2.1/32").unwrap(),
                    },
                    deadline_ns: 9,
                },
            ],
            ..UpstreamState::default()
        }
    }

    #[test]
    fn the_same_speaker_keeps_each_route_with_its_deadline() {
        let l = left(Some(gobgp(50051)));
        let c = config(gobgp(50051), false);
        assert_eq!(adoption(&l, Some(&c)), Adoption::Keep(l.applied.clone()));
        // An older file names its speaker only: the name matches.
        assert_eq!(
            adoption(&left(None), Some(&c)),
            Adoption::Keep(l.applied.clone())
        );
    }

    #[test]
    fn another_speaker_a_dry_run_or_none_withdraws_through_the_old_one() {
        let l = left(Some(gobgp(50051)));
        let routes: Vec<Route> = l.applied.iter().map(|h| h.route.clone()).collect();
        let want = Adoption::Withdraw(gobgp(50051), routes.clone());
        assert_eq!(adoption(&l, Some(&config(gobgp(50052), false))), want);
        assert_eq!(adoption(&l, Some(&config(gobgp(50051), true))), want);
        assert_eq!(adoption(&l, None), want);
        // An older file: its speaker is this serve's by name, or unknown.
        assert_eq!(
            adoption(&left(None), Some(&config(gobgp(50051), true))),
            want
        );
        assert_eq!(
            adoption(&left(None), None),
            Adoption::Unknown("gobgp 127.0.0.1:50051".into(), routes)
        );
    }

    #[test]
    fn nothing_listed_nothing_to_do() {
        let mut l = left(Some(gobgp(50051)));
        l.applied.clear();
        assert_eq!(adoption(&l, None), Adoption::Nothing);
    }

    #[test]
    fn one_holder_at_a_time_and_a_removed_lock_is_made_anew() {
        let dir = std::env::temp_dir().join(format!("flt-handover-{}", std::process::id()));
        let path = dir.join("eth0.lock");
        let first = Lock::try_take(&path).unwrap().expect("a free lock");
        assert!(Lock::try_take(&path).unwrap().is_none(), "taken twice");
        // Nobody in the file to ask: busy, said so.
        match take_over(&path, None).unwrap() {
            TakeOver::Busy(who) => assert_eq!(who, "another filterctl process"),
            TakeOver::Taken(_) => panic!("taken twice"),
        }
        first.release(true);
        assert!(!dir.exists(), "the lock file and its folder stay");
        let again = Lock::try_take(&path).unwrap().expect("free again");
        drop(again);
        assert!(matches!(
            take_over(&path, None).unwrap(),
            TakeOver::Taken(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
