//! `cargo xtask fuzz`: filter-user's tests/integration/fuzz.rs, optimised, with its
//! budget and seed in the environment.

use crate::{
    cmd::{cmd, run},
    setup::setup,
};

/// Runs tests/integration/fuzz.rs with its budget in the environment, optimised.
pub fn fuzz(
    rules: Option<u64>,
    captures: Option<u64>,
    seconds: u64,
    seed: Option<u64>,
) -> anyhow::Result<()> {
    setup()?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!("fuzz seed {seed} (--seed {seed} repeats this run)");
    let args = [
        "test",
        "-p",
        "filter-user",
        "--release",
        "--test",
        "integration",
    ];
    let mut c = cmd("cargo", args);
    c.args(["--", "--nocapture", "fuzz::"])
        .env(
            "FILTERCTL_FUZZ_RULES",
            rules.unwrap_or(u64::MAX).to_string(),
        )
        .env(
            "FILTERCTL_FUZZ_CAPTURES",
            captures.unwrap_or(u64::MAX).to_string(),
        )
        .env("FILTERCTL_FUZZ_SECONDS", seconds.to_string())
        .env("FILTERCTL_FUZZ_SEED", seed.to_string());
    run(c)
}
