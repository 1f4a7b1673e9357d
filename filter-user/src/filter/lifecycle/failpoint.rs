//! Fault injection for the crash-safety tests: FILTERCTL_FAILPOINT=NAME:fail
//! makes step NAME fail, NAME:pause makes it sleep so that a test can kill
//! the process right there. Compiled in only with the `failpoints` feature,
//! which the test suite turns on: a product build ignores the variable.

/// Fails or pauses at step `name` when the test suite asks for it.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("FILTERCTL_FAILPOINT") else {
        return Ok(());
    };
    match spec.split_once(':') {
        Some((n, "fail")) if n == name => anyhow::bail!("failpoint {name} triggered"),
        Some((n, "pause")) if n == name => {
            eprintln!("failpoint {name}: pausing");
            std::thread::sleep(std::time::Duration::from_secs(60));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Product builds: no fault injection.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) -> anyhow::Result<()> {
    Ok(())
}
