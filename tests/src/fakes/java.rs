//! Java's textual forms of numbers, as Flume's HTTP monitoring prints them: every metric value is
//! `String.valueOf(...)` of a Java `long` or `double`.

/// Formats `x` like Java's `Double.toString(x)`.
///
/// Plain decimal with at least one fractional digit when `1e-3 <= |x| < 1e7` (`"0.0"`, `"93.2"`,
/// `"100.0"`), otherwise computerized scientific notation with a one-digit integer part and at
/// least one fractional digit (`"5.0E-4"`, `"1.0E7"`, `"1.2345E-5"`). The digits are the shortest
/// that round-trip, as Java (since JDK 19, and for all the values tests use before it) prints them.
pub fn double_to_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let magnitude = x.abs();
    if (1e-3..1e7).contains(&magnitude) {
        // Rust's `Display` for f64 is the shortest round-trip form, never in exponent notation.
        let s = x.to_string();
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // `LowerExp` gives "5e-4", "1.2345e-5", "1e7": Java wants "5.0E-4", "1.2345E-5", "1.0E7".
        let s = format!("{x:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        if mantissa.contains('.') {
            format!("{mantissa}E{exponent}")
        } else {
            format!("{mantissa}.0E{exponent}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::double_to_string;

    #[test]
    fn matches_java_double_to_string() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (93.2, "93.2"),
            (100.0, "100.0"),
            (1.0, "1.0"),
            (0.001, "0.001"),
            (0.0005, "5.0E-4"),
            (0.00012345, "1.2345E-4"),
            (1e7, "1.0E7"),
            (9_999_999.0, "9999999.0"),
            (12_345_678.9, "1.23456789E7"),
            (-0.0005, "-5.0E-4"),
            (-42.5, "-42.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (5.0 / 1_000_000.0 * 100.0, "5.0E-4"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(double_to_string(x), want, "Double.toString({x:?})");
        }
    }
}
