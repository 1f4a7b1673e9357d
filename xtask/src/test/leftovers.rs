//! The leftovers check: no network namespace or bpffs pin that tests or the
//! demo made outlives them.

use std::{ffi::CString, mem::MaybeUninit, os::unix::ffi::OsStrExt as _, path::Path};

use anyhow::{Context as _, bail};

use crate::cmd::probe;

/// Prefix of the network namespaces tests and the demo create.
const NETNS_PREFIX: &str = "flt-";
/// Prefixes of the pins under /sys/fs/bpf that tests and the demo create.
const PIN_PREFIXES: &[&str] = &["filterctl-test", "filterctl-demo"];
/// Where pins live, when a bpffs is mounted there.
const BPFFS: &str = "/sys/fs/bpf";

/// Fails when a namespace or a pin outlived the tests: every test must clean
/// up on every path, or the next run (or the machine) inherits the mess.
pub fn check_leftovers() -> anyhow::Result<()> {
    let mut left = Vec::new();
    let netns = probe("ip", &["netns", "list"]).context("`ip netns list` failed")?;
    // Lines look like `flt-victim-1234 (id: 3)`.
    left.extend(
        netns
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| name.starts_with(NETNS_PREFIX))
            .map(|name| format!("namespace {name}")),
    );
    left.extend(
        pins(Path::new(BPFFS))?
            .into_iter()
            .map(|p| format!("pin {p}")),
    );
    if !left.is_empty() {
        bail!("left behind: {}", left.join(", "));
    }
    println!("no namespace or pin left behind");
    Ok(())
}

/// The pins under `bpffs` that tests and the demo create. None when no bpffs
/// is mounted there: nothing can have been pinned then.
fn pins(bpffs: &Path) -> anyhow::Result<Vec<String>> {
    if !is_bpffs(bpffs)? {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(bpffs).with_context(|| format!("cannot list {}", bpffs.display()))?;
    let mut pins = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if PIN_PREFIXES.iter().any(|p| name.starts_with(p)) {
            pins.push(bpffs.join(name).display().to_string());
        }
    }
    Ok(pins)
}

/// Whether a bpffs is mounted at `path` (its file system's magic number, as
/// libbpf tells); false when `path` does not exist.
fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut stat = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated and stat is a writable statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::NotFound {
            return Ok(false);
        }
        return Err(err).with_context(|| format!("cannot statfs {}", path.display()));
    }
    // SAFETY: statfs succeeded, so it filled stat.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_type == libc::BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::pins;

    /// Pins exist only on a bpffs: a missing folder, or a plain one holding
    /// a file with a pin's name, has none.
    #[test]
    fn no_bpffs_means_no_pins() {
        assert_eq!(
            pins(Path::new("/nonexistent/sys/fs/bpf")).unwrap(),
            Vec::<String>::new()
        );
        let plain = std::env::temp_dir().join(format!("xtask-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("filterctl-test-1"), "").unwrap();
        let found = pins(&plain);
        std::fs::remove_dir_all(&plain).unwrap();
        assert_eq!(found.unwrap(), Vec::<String>::new());
    }
}
