//! Test fakes: `FILTERCTL_FAKE=a,b` makes the named system facts read as
//! refused or missing (an unreadable /proc/1, a kernel without TCX...),
//! so that the paths of machines unlike this one run in tests. Compiled in
//! only with the `failpoints` feature, as fault injection is.

#[cfg(feature = "failpoints")]
pub(crate) fn on(what: &str) -> bool {
    std::env::var("FILTERCTL_FAKE").is_ok_and(|v| v.split(',').any(|w| w.trim() == what))
}

/// Product builds: nothing is faked.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn on(_what: &str) -> bool {
    false
}
