//! Tuning knobs: environment variables that override a kernel-shape default, for measurement runs.

/// The value of the environment variable `name` when it parses as a `T` that `ok` accepts.
pub(crate) fn knob<T: std::str::FromStr>(name: &str, ok: impl Fn(&T) -> bool) -> Option<T> {
    std::env::var(name).ok()?.parse().ok().filter(ok)
}
