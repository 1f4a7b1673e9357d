//! The failpoints gate: fault injection in test builds of filter-user only.

use anyhow::{Context as _, bail};

use crate::cmd::cmd;

/// Fault injection (FILTERCTL_FAILPOINT) must exist in test builds only
/// (a step of `xtask test`, and a test of this crate for a bare `cargo test`):
/// the tests turn the `failpoints` feature on through filter-user's
/// dev-dependency on itself, which a product build never resolves. Asked of
/// cargo's feature resolution (no build): off without dev-dependencies, on
/// with them, so that the check can tell the two apart.
pub(super) fn check_failpoints_gate() -> anyhow::Result<()> {
    let features = |edges: &str| {
        let args = ["tree", "-p", "filter-user", "-e", edges, "--depth", "0"];
        let mut c = cmd("cargo", args);
        c.args(["-f", "{p} [{f}]"]);
        let out = c.output().context("cannot run cargo tree")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let first = text.lines().next().unwrap_or_default().to_string();
        anyhow::ensure!(out.status.success(), "cargo tree failed: {first}");
        Ok::<_, anyhow::Error>(first)
    };
    let product = features("no-dev")?;
    let tests = features("normal,dev")?;
    if product.contains("failpoints") {
        bail!("a product build of filter-user has fault injection: {product}");
    }
    if !tests.contains("failpoints") {
        bail!("the test build of filter-user lacks fault injection: {tests}");
    }
    println!("failpoints: off in the product ({product}), on in tests ({tests})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_failpoints_gate;

    /// The same check `xtask test` runs: cheap (cargo tree, no build).
    #[test]
    fn fault_injection_is_in_test_builds_only() {
        check_failpoints_gate().unwrap_or_else(|e| panic!("{e:#}"));
    }
}
