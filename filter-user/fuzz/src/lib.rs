//! What the fuzz targets share: the cases of the mutation fuzzer, included
//! by path so that both fuzzers hold an input to the same promises, and a
//! scratch file in memory for the readers that take a path.

use std::{
    ffi::CStr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

#[path = "../../tests/integration/fuzz/cases.rs"]
pub mod cases;

/// filter-user's folder: the rule-file seeds name list files relative to
/// its tests/broken/.
pub fn package_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A file in memory (memfd), named by its /proc/self/fd path so that the
/// cases write it and the readers open it like any regular file. Nothing is
/// left on disk when libFuzzer ends the process, on a crash as at the end.
pub struct Scratch {
    path: PathBuf,
    _fd: OwnedFd,
}

impl Scratch {
    pub fn new(name: &CStr) -> Scratch {
        // SAFETY: a NUL-terminated name; memfd_create has no other
        // preconditions.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: a descriptor memfd_create just returned, owned here alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Scratch {
            path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            _fd: fd,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
