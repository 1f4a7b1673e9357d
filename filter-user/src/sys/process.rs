//! This process and the host it runs on: its ids, the names of users, the
//! kernel's coarse clock, the kernel's release; and other processes: when
//! one started, SIGTERM, a session of its own for a child.

use std::ffi::CStr;

/// CLOCK_MONOTONIC_COARSE in ns: the clock the program's deadlines use.
pub(crate) fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The parent process's id.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() as u32 }
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The name of user `uid` (getpwuid_r), if the user database has one.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    // SAFETY: a zeroed passwd is a valid place for getpwuid_r to fill.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found = std::ptr::null_mut();
    // SAFETY: pwd, buf (with its true length) and found are writable and
    // outlive the call.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r found the user: pw_name points at a NUL-terminated
    // string in buf, which is still alive.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The running kernel's release (uname -r).
pub(crate) fn kernel_release() -> String {
    // SAFETY: a zeroed utsname is valid for uname to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is writable.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".to_string();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The environment process `pid` started with (/proc/PID/environ), if this
/// process may read it (root may; a user, of its own processes).
pub(crate) fn process_environ(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The fields of /proc/PID/stat from the third (the state) on: those after
/// the command's closing parenthesis, which the command itself may hold.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// The parent of process `pid` (field 4 of /proc/PID/stat).
pub(crate) fn process_parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// When process `pid` started, in clock ticks after boot (field 22 of
/// /proc/PID/stat): with the pid, what tells a process from a later one
/// given the same pid. None when there is no such process, or only its
/// zombie.
pub(crate) fn process_started(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // Field 3, the state: Z a zombie, X dead.
    if matches!(fields.first()?.as_str(), "Z" | "X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Sends SIGTERM to process `pid`.
pub(crate) fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill has no memory preconditions; a positive pid names one
    // process.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` start its process in a session of its own (setsid): a
/// signal to the caller's process group or terminal does not reach it.
pub(crate) fn own_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: setsid is one, and it
    // touches no memory of the parent's.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_has_a_start_time_and_a_reaped_one_none() {
        let me = std::process::id();
        assert!(process_started(me).is_some());
        assert_eq!(process_started(me), process_started(me));
        // Exited and not reaped yet: a zombie, which runs no more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let zombie = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            process_started(pid).is_none()
        });
        child.wait().unwrap();
        assert!(zombie, "pid {pid} still runs after 2 s");
    }
}
