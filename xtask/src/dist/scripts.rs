//! The package's maintainer scripts. Each honours DPKG_ROOT, which dpkg
//! sets when it installs into another root with `--force-script-chrootless`
//! (the scripts then run on the host): the user and the unit's state go
//! into that root, and nothing touches the host's running systemd or bpffs.

/// Creates the user and the pin root; fails, saying why, without
/// systemd-sysusers (the service cannot run without its user). Records the
/// links `systemctl enable` would make, so that the prerm can take them
/// away. Neither enables nor starts the service.
const POSTINST: &str = "#!/bin/sh
set -e
if [ \"$1\" = configure ]; then
    if ! command -v systemd-sysusers >/dev/null 2>&1; then
        echo \"filterctl: systemd-sysusers not found: cannot create the filterctl user the service runs as. Install systemd (or systemd-standalone-sysusers), then: dpkg --configure filterctl\" >&2
        exit 1
    fi
    systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} filterctl.conf
    # The pin root is on bpffs, which a chroot or a container may lack: the
    # service's start then fails and says so; at boot, systemd makes it.
    # Another root's pin root is made when that root boots.
    if [ -z \"${DPKG_ROOT:-}\" ]; then
        systemd-tmpfiles --create filterctl.conf ||
            echo \"filterctl: /sys/fs/bpf/filterctl not created (is bpffs mounted?)\" >&2
    fi
    deb-systemd-helper update-state filterctl.service
    if [ -z \"${DPKG_ROOT:-}\" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
# Not enabled or started: pick the interface in /etc/default/filterctl, then
# `systemctl enable --now filterctl`.
exit 0
";

/// Stops the daemon before its binary goes and takes the unit out of the
/// boot, on remove only: an upgrade leaves it running until `systemctl
/// restart filterctl`. Either way the filter stays attached and enforcing
/// (`filterctl unload --all` takes it off).
const PRERM: &str = "#!/bin/sh
set -e
if [ \"$1\" = remove ]; then
    if [ -z \"${DPKG_ROOT:-}\" ] && [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop filterctl.service
    fi
    deb-systemd-helper disable filterctl.service
fi
exit 0
";

/// Forgets the unit's recorded links on purge. The user stays, as Debian's
/// system users do: files it owned may outlive the package.
const POSTRM: &str = "#!/bin/sh
set -e
if [ -z \"${DPKG_ROOT:-}\" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
if [ \"$1\" = purge ]; then
    deb-systemd-helper purge filterctl.service
fi
exit 0
";

/// The maintainer scripts, by name.
pub const SCRIPTS: [(&str, &str); 3] =
    [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)];

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt as _, path::Path};

    use super::*;

    /// Runs maintainer script `text` with `arg` and the variables `env`, its
    /// PATH holding only `tools` (each a stub that logs its arguments, or
    /// fails when its name is in `failing`): exit status, stderr, the stubs'
    /// calls.
    fn run_script(
        text: &str,
        arg: &str,
        env: &[(&str, &str)],
        tools: &[&str],
        failing: &[&str],
    ) -> (i32, String, String) {
        // Tests run at once: a folder for each run.
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xtask-dist-{}-{n}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.join("calls");
        for tool in tools {
            let status = if failing.contains(tool) { 1 } else { 0 };
            let stub = format!(
                "#!/bin/sh\necho \"{tool} $*\" >> {}\nexit {status}\n",
                log.display()
            );
            std::fs::write(bin.join(tool), stub).unwrap();
            std::fs::set_permissions(bin.join(tool), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", text, "script", arg])
            .env_clear()
            .env("PATH", &bin)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), stderr, calls)
    }

    /// systemctl is called only where systemd runs (as PID 1): not in
    /// these tests unless the machine runs it.
    fn systemd_runs() -> bool {
        Path::new("/run/systemd/system").is_dir()
    }

    const POSTINST_TOOLS: [&str; 4] = [
        "systemd-sysusers",
        "systemd-tmpfiles",
        "deb-systemd-helper",
        "systemctl",
    ];

    #[test]
    fn postinst_fails_without_sysusers_and_says_why() {
        let (code, stderr, calls) =
            run_script(POSTINST, "configure", &[], &["systemd-tmpfiles"], &[]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("systemd-sysusers not found"), "{stderr}");
        assert_eq!(calls, "", "nothing else ran");
    }

    #[test]
    fn postinst_makes_the_user_and_records_the_unit() {
        // bpffs missing: said, not fatal.
        let (code, stderr, calls) = run_script(
            POSTINST,
            "configure",
            &[],
            &POSTINST_TOOLS,
            &["systemd-tmpfiles"],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("is bpffs mounted?"), "{stderr}");
        let mut expected = "systemd-sysusers filterctl.conf\n\
                            systemd-tmpfiles --create filterctl.conf\n\
                            deb-systemd-helper update-state filterctl.service\n"
            .to_string();
        if systemd_runs() {
            expected += "systemctl daemon-reload\n";
        }
        assert_eq!(calls, expected);
    }

    /// Installed into another root, the user goes there and neither this
    /// host's bpffs nor its systemd is touched (an empty DPKG_ROOT, as dpkg
    /// sets it for its own root, is this host).
    #[test]
    fn postinst_into_another_root_makes_the_user_there_only() {
        let env = [("DPKG_ROOT", "/tmp/r")];
        let (code, stderr, calls) = run_script(POSTINST, "configure", &env, &POSTINST_TOOLS, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            calls,
            "systemd-sysusers --root=/tmp/r filterctl.conf\n\
             deb-systemd-helper update-state filterctl.service\n"
        );
        let (_, _, calls) = run_script(
            POSTINST,
            "configure",
            &[("DPKG_ROOT", "")],
            &POSTINST_TOOLS,
            &[],
        );
        assert!(
            calls.starts_with("systemd-sysusers filterctl.conf\nsystemd-tmpfiles"),
            "{calls}"
        );
    }

    #[test]
    fn prerm_stops_and_disables_on_remove_only() {
        let tools = ["deb-systemd-invoke", "deb-systemd-helper"];
        let (code, stderr, calls) = run_script(PRERM, "remove", &[], &tools, &[]);
        assert_eq!(code, 0, "{stderr}");
        let stop = if systemd_runs() {
            "deb-systemd-invoke stop filterctl.service\n"
        } else {
            ""
        };
        assert_eq!(
            calls,
            format!("{stop}deb-systemd-helper disable filterctl.service\n")
        );
        // A failed disable stops the removal rather than leave the unit
        // enabled without its files.
        let (code, _, _) = run_script(PRERM, "remove", &[], &tools, &["deb-systemd-helper"]);
        assert_ne!(code, 0);
        for arg in ["upgrade", "deconfigure", "failed-upgrade"] {
            let (code, stderr, calls) = run_script(PRERM, arg, &[], &tools, &[]);
            assert_eq!((code, calls.as_str()), (0, ""), "prerm {arg}: {stderr}");
        }
        let env = [("DPKG_ROOT", "/tmp/r")];
        let (code, stderr, calls) = run_script(PRERM, "remove", &env, &tools, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(calls, "deb-systemd-helper disable filterctl.service\n");
    }

    #[test]
    fn postrm_purges_the_recorded_links() {
        let tools = ["deb-systemd-helper", "systemctl"];
        let (code, stderr, calls) = run_script(POSTRM, "purge", &[], &tools, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            calls.ends_with("deb-systemd-helper purge filterctl.service\n"),
            "{calls}"
        );
        let (_, _, calls) = run_script(POSTRM, "remove", &[], &tools, &[]);
        assert!(!calls.contains("deb-systemd-helper"), "{calls}");
        let env = [("DPKG_ROOT", "/tmp/r")];
        let (_, _, calls) = run_script(POSTRM, "purge", &env, &tools, &[]);
        assert_eq!(calls, "deb-systemd-helper purge filterctl.service\n");
    }
}
