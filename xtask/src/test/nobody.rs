//! The libraries' unit tests run again as user nobody, without capabilities.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use super::{results::TestRun, run::run_tests};
use crate::cmd::cmd;

/// The libraries' unit tests again, as user nobody with no capability:
/// they need no root (what does lives in the integration tests), so a
/// contributor without privileges runs them. Each test binary is copied
/// where nobody may run it.
pub(super) fn unprivileged_unit_tests() -> anyhow::Result<TestRun> {
    let args = [
        "test",
        "-p",
        "filter-user",
        "-p",
        "filter-common",
        "--lib",
        "--no-run",
        "--message-format=json",
    ];
    let out = cmd("cargo", args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed ({})", out.status);
    }
    let dir = std::env::temp_dir().join(format!("xtask-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut all = TestRun::default();
    for exe in test_executables(&String::from_utf8_lossy(&out.stdout)) {
        let name = Path::new(&exe)
            .file_name()
            .context("an executable's name")?;
        let copy = dir.join(name);
        std::fs::copy(&exe, &copy).with_context(|| format!("cannot copy {exe}"))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&copy)
        .current_dir(&dir);
        all.absorb(run_tests(c)?, &name.to_string_lossy());
    }
    let _ = std::fs::remove_dir_all(&dir);
    if all.passed == 0 {
        bail!("no unit test ran as nobody");
    }
    Ok(all)
}

/// The test executables cargo's JSON messages name (`"executable":"…"`).
fn test_executables(json_lines: &str) -> Vec<String> {
    json_lines
        .lines()
        .filter(|l| l.contains("\"test\":true"))
        .filter_map(|l| {
            let rest = l.split("\"executable\":\"").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_executables;

    #[test]
    fn finds_the_test_executables_in_cargos_messages() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","profile":{"test":true},"executable":"/t/deps/filterctl-1"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(test_executables(json), ["/t/deps/filterctl-1"]);
    }
}
