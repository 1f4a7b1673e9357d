//! File descriptors: the open-file limit, the errors that say a process ran
//! out of them or that one connection failed, and waiting for one to be
//! readable.

use super::error::SysError;

/// Raises the soft limit on open files to the hard limit (or to the
/// kernel's `fs.nr_open` when the hard limit is unlimited); returns the soft
/// limit now in force.
pub(crate) fn raise_nofile_limit() -> Result<u64, SysError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource and a writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(SysError::NoFileLimit {
            soft: 0,
            hard: 0,
            source: std::io::Error::last_os_error(),
        });
    }
    // An unlimited soft limit on open files is refused (EPERM): nr_open is
    // the most the kernel allows.
    let hard = if lim.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur >= hard {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: a valid resource and an initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(SysError::NoFileLimit {
            soft: lim.rlim_cur,
            hard,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(hard)
}

/// True for the errors that say this process (EMFILE) or the host
/// (ENFILE) has no file descriptor left: what closing others cures, not a
/// bad input.
pub(crate) fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// True for the errors `accept` returns about one connection (aborted
/// before it was accepted, refused by a firewall rule, or a network error
/// the kernel passes on, see accept(2)), after which the next accept may
/// work at once.
pub(crate) fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::EAGAIN
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Waits until `fd` is readable or `timeout` passed; true if readable.
pub(crate) fn wait_readable(
    fd: std::os::fd::BorrowedFd<'_>,
    timeout: std::time::Duration,
) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the length given.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    match rc {
        -1 => {
            let e = std::io::Error::last_os_error();
            // A signal (Ctrl-C) is the caller's to handle.
            if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_files_and_connection_errors() {
        let os = std::io::Error::from_raw_os_error;
        for errno in [libc::EMFILE, libc::ENFILE] {
            assert!(is_out_of_files(&os(errno)), "{errno}");
            assert!(!is_connection_error(&os(errno)), "{errno}");
        }
        for errno in [libc::ECONNABORTED, libc::ECONNRESET, libc::EINTR] {
            assert!(is_connection_error(&os(errno)), "{errno}");
            assert!(!is_out_of_files(&os(errno)), "{errno}");
        }
        let other = std::io::Error::other("not an errno");
        // ENOMEM may be a map too large for this host: not retried.
        assert!(!is_out_of_files(&os(libc::ENOMEM)));
        assert!(!is_out_of_files(&other) && !is_connection_error(&other));
    }

    fn nofile() -> libc::rlimit {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid resource and a writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        lim
    }

    #[test]
    fn nofile_limit_raised_to_the_hard_limit() {
        let hard = nofile().rlim_max;
        // One under the hard limit, so that there is something to raise
        // without starving the tests that run beside this one.
        let lowered = libc::rlimit {
            rlim_cur: hard.min(1 << 20) - 1,
            rlim_max: hard,
        };
        // SAFETY: a valid resource and an initialised rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let soft = raise_nofile_limit().expect("raise RLIMIT_NOFILE");
        assert!(
            soft > lowered.rlim_cur,
            "not raised from {}",
            lowered.rlim_cur
        );
        assert_eq!(nofile().rlim_cur, soft);
        if hard != libc::RLIM_INFINITY {
            assert_eq!(soft, hard, "the soft limit is the hard one");
        }
    }
}
