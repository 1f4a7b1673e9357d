//! The change check of a watched rule file, made every second: `stat`
//! first, so that whatever is put at the path (a FIFO, a device, a file of
//! gigabytes) costs one `stat` and is never opened nor read here; the
//! bytes, as `check` reads them, only when the `stat` changed.

use std::{
    fs::Metadata,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest as _, Sha256};

use crate::rules::files::{self, MAX_RULE_FILE};

/// How long after a file's last change (its ctime, which the kernel sets
/// and nobody can set back) a later write may leave its `stat` as it was
/// (same size, same coarse timestamp): a file changed more recently is read
/// again at every look. Above the 2 s timestamps of the coarsest file
/// systems (FAT).
const RACY: Duration = Duration::from_secs(3);

/// What `stat` says of a file: enough to tell that it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    rdev: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            rdev: m.rdev(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Which file it is, whatever is written to it.
    fn identity(self) -> Stamp {
        Stamp {
            len: 0,
            mtime: (0, 0),
            ctime: (0, 0),
            ..self
        }
    }

    /// Whether its last change is old enough that any later one shows in
    /// its `stat`. Not when the clock says otherwise (a ctime ahead of it):
    /// reading again costs at most `MAX_RULE_FILE` bytes.
    fn settled(&self, now: SystemTime) -> bool {
        let (Ok(secs), Ok(nanos)) = (u64::try_from(self.ctime.0), u32::try_from(self.ctime.1))
        else {
            return false;
        };
        let changed = UNIX_EPOCH + Duration::new(secs, nanos);
        now.duration_since(changed).is_ok_and(|age| age >= RACY)
    }
}

/// The rule file as one look found it.
#[derive(Debug)]
enum Look {
    /// The digest of its bytes.
    Bytes([u8; 32]),
    /// Not a regular file, or over the size limit: the reload refuses it.
    /// Only which file it is counts, so that writes to a FIFO or to a huge
    /// file do not count as changes, nor log again.
    Refused(Stamp),
    Unreadable(String),
}

impl Look {
    fn hash(&self, h: &mut Sha256) {
        match self {
            Look::Bytes(digest) => h.update(digest),
            Look::Refused(which) => h.update(format!("refused: {which:?}")),
            Look::Unreadable(why) => h.update(format!("unreadable: {why}")),
        }
    }
}

/// What the poll compares: the rule file's digest, and the identity, size
/// and times of each list file it names. The rule file is only parsed when
/// this changes.
#[derive(Default)]
pub(super) struct Fingerprint {
    /// The rule file at its last read: its `stat` then and its digest.
    read: Option<(Stamp, [u8; 32])>,
    lists: Vec<PathBuf>,
    value: Option<[u8; 32]>,
}

impl Fingerprint {
    /// Whether the files were never looked at.
    pub(super) fn is_new(&self) -> bool {
        self.value.is_none()
    }

    /// Looks at the files again; true when anything changed since the last
    /// look (or this is the first). Blocking (`stat`, and a read of at most
    /// `MAX_RULE_FILE` bytes): run it off the runtime.
    pub(super) fn changed(&mut self, path: &Path) -> bool {
        let mut h = Sha256::new();
        self.look(path, SystemTime::now()).hash(&mut h);
        for l in &self.lists {
            match std::fs::metadata(l) {
                Ok(m) => h.update(format!("{:?}", Stamp::of(&m))),
                Err(e) => h.update(format!("missing: {:?}", e.kind())),
            }
            h.update([0]);
        }
        let value: [u8; 32] = h.finalize().into();
        let changed = self.value != Some(value);
        self.value = Some(value);
        changed
    }

    fn look(&mut self, path: &Path, now: SystemTime) -> Look {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.forget(Look::Unreadable(format!("{:?}", e.kind()))),
        };
        let stamp = Stamp::of(&meta);
        if !meta.is_file() || meta.len() > MAX_RULE_FILE {
            return self.forget(Look::Refused(stamp.identity()));
        }
        if let Some((seen, digest)) = self.read
            && seen == stamp
            && seen.settled(now)
        {
            return Look::Bytes(digest);
        }
        // Checked again on the open file: the name may have changed since.
        match files::read_rule_bytes(path) {
            Ok(bytes) => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                if self.read.map(|(_, d)| d) != Some(digest) {
                    self.lists = list_files(&bytes, path.parent().unwrap_or(Path::new(".")));
                }
                self.read = Some((stamp, digest));
                Look::Bytes(digest)
            }
            Err(e) => self.forget(Look::Unreadable(e.to_string())),
        }
    }

    /// No rule file to read, hence no list files either.
    fn forget(&mut self, look: Look) -> Look {
        self.read = None;
        self.lists.clear();
        look
    }
}

/// The list files (`allow_files`, `deny_files`) a rule file names, relative
/// to its folder as the rule parser reads them; none when it is not TOML.
fn list_files(bytes: &[u8], base: &Path) -> Vec<PathBuf> {
    let Ok(table) = std::str::from_utf8(bytes)
        .map_err(|_| ())
        .and_then(|t| toml::from_str::<toml::Table>(t).map_err(|_| ()))
    else {
        return Vec::new();
    };
    ["allow_files", "deny_files"]
        .iter()
        .filter_map(|k| table.get(*k)?.as_array())
        .flatten()
        .filter_map(|v| v.as_str())
        .map(|f| base.join(f))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    /// A folder of its own, removed when the test ends.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("flt-fp-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn follows_bytes_and_list_files() {
        let dir = Dir::new("lists");
        let file = dir.0.join("rules.toml");
        let list = dir.0.join("deny.txt");
        std::fs::write(&list, "203.0.113.0/24\n").unwrap();
        std::fs::write(&file, "deny_files = [\"deny.txt\"]\n").unwrap();
        let mut fp = Fingerprint::default();
        assert!(fp.changed(&file), "the first look is a change");
        assert!(!fp.changed(&file));
        std::fs::write(&file, "deny_files = [\"deny.txt\"] \n").unwrap();
        assert!(fp.changed(&file), "new bytes");
        assert!(!fp.changed(&file));
        std::fs::write(&list, "203.0.113.128/25\n").unwrap();
        assert!(fp.changed(&file), "the list file was written");
        std::fs::remove_file(&file).unwrap();
        assert!(fp.changed(&file), "the file is gone");
        assert!(!fp.changed(&file));
    }

    /// A write within the same tick of the file system's clock, of the
    /// same size, leaves the `stat` as it was: only the bytes tell, so a
    /// file changed lately is read at every look.
    #[test]
    fn reads_again_while_the_stat_may_hide_a_write() {
        let dir = Dir::new("racy");
        let file = dir.0.join("rules.toml");
        std::fs::write(&file, "a = 1\n").unwrap();
        let mut fp = Fingerprint::default();
        let Look::Bytes(real) = fp.look(&file, SystemTime::now()) else {
            panic!("a rule file is read");
        };
        // As if read just before such a write.
        let stale = [0; 32];
        let (stamp, _) = fp.read.unwrap();
        fp.read = Some((stamp, stale));
        let later = SystemTime::now() + RACY;
        assert!(
            matches!(fp.look(&file, later), Look::Bytes(d) if d == stale),
            "a stat older than {RACY:?} is trusted"
        );
        assert!(
            matches!(fp.look(&file, SystemTime::now()), Look::Bytes(d) if d == real),
            "a recent one is not"
        );
    }

    /// A FIFO would hang a read until a writer came, /dev/zero never end,
    /// a sparse file cost its size: each is one change, seen from `stat`.
    #[test]
    fn refuses_what_the_reload_refuses_without_reading_it() {
        let dir = Dir::new("refused");
        let file = dir.0.join("rules.toml");
        let next = dir.0.join("next");
        std::fs::write(&file, "a = 1\n").unwrap();
        let mut fp = Fingerprint::default();
        assert!(fp.changed(&file));
        let c = std::ffi::CString::new(next.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::rename(&next, &file).unwrap();
        assert!(fp.changed(&file), "a FIFO");
        assert!(matches!(
            fp.look(&file, SystemTime::now()),
            Look::Refused(_)
        ));
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
        assert!(fp.changed(&file), "a device");
        assert!(!fp.changed(&file));
        std::fs::remove_file(&file).unwrap();
        let sparse = File::create(&file).unwrap();
        sparse.set_len(256 << 20).unwrap();
        assert!(fp.changed(&file), "a huge file");
        assert!(matches!(
            fp.look(&file, SystemTime::now()),
            Look::Refused(_)
        ));
        // Written to, still refused: no change to report again.
        sparse.set_len(257 << 20).unwrap();
        assert!(!fp.changed(&file));
        std::fs::write(&file, "a = 1\n").unwrap();
        assert!(fp.changed(&file), "a rule file again");
        assert!(matches!(fp.look(&file, SystemTime::now()), Look::Bytes(_)));
    }
}
