//! Settings in seconds: every component takes its timeouts and intervals as `f64` seconds
//! in TOML, checked here once.

/// The longest time any setting may name: a year. Past it a number is a mistake (or
/// `inf`), and `Duration` itself overflows soon after.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A setting in seconds, checked: finite, not negative (`allow_zero`) or positive, and at
/// most [`MAX_SECONDS`]. The error names the setting.
pub fn seconds(name: &str, value: f64, allow_zero: bool) -> Result<std::time::Duration, String> {
    let low_ok = if allow_zero {
        value >= 0.0
    } else {
        value > 0.0
    };
    if !(value.is_finite() && low_ok && value <= MAX_SECONDS) {
        let least = if allow_zero { "0" } else { "more than 0" };
        return Err(format!(
            "{name} must be a number of seconds from {least} to {MAX_SECONDS} (one year), not {value}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

/// A setting in seconds as a `Duration`, saturating (so even an unvalidated value cannot
/// panic; [`seconds`] is the check).
pub fn duration(s: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(std::time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_finite_bounded_and_named() {
        assert_eq!(
            seconds("x", 1.5, false).unwrap(),
            std::time::Duration::from_millis(1500)
        );
        assert!(seconds("x", 0.0, true).is_ok());
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN, 1e300] {
            let err = seconds("shutdown_timeout_secs", bad, bad != 0.0).unwrap_err();
            assert!(err.starts_with("shutdown_timeout_secs must be"), "{err}");
        }
    }
}
