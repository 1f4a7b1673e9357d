//! Waiting for a child process with a hang guard, and reading its peak
//! memory: for tests that must show a command ends and stays small.

use std::{
    os::unix::process::ExitStatusExt as _,
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

/// How a child ended and the most memory it held.
pub struct Waited {
    pub status: ExitStatus,
    /// Peak resident set (ru_maxrss), in KiB. It includes the parent's
    /// resident set at the spawn, which the child shares until its exec:
    /// a test comparing peaks must keep itself smaller than the child.
    pub max_rss_kb: u64,
}

/// Waits for `child`, killing it and panicking if it runs past `limit`: a
/// hang guard far beyond any real run, not a measure of speed. The child's
/// output must go to files or be small enough for its pipes, since nothing
/// reads them while it runs.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Waited {
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; all zeros is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is this process's own child, not yet reaped, and both
        // pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            return Waited {
                status: ExitStatus::from_raw(status),
                max_rss_kb: usage.ru_maxrss.max(0) as u64,
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {pid} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
