//! Reading the metric's number from a command's output. Pure.

use crate::spec::Extraction;

/// The number, or why there is none (shown to the user and the agent's quick-fix prompt).
pub fn extract(how: &Extraction, stdout: &str, stderr: &str) -> Result<f64, String> {
    match how {
        Extraction::Regex(re) => {
            for text in [stdout, stderr] {
                if let Some(c) = re.captures_iter(text).last() {
                    let Some(m) = c.get(1) else { continue };
                    return parse_number(m.as_str()).ok_or_else(|| {
                        format!(
                            "regex {:?} captured {:?}, which is not a number",
                            re.as_str(),
                            m.as_str()
                        )
                    });
                }
            }
            Err(format!(
                "regex {:?} matched nothing in the output",
                re.as_str()
            ))
        }
        Extraction::Json(path) => {
            let v: serde_json::Value = serde_json::from_str(stdout.trim())
                .or_else(|_| last_json_line(stdout))
                .map_err(|e| format!("stdout is not JSON ({e})"))?;
            let mut cur = &v;
            for key in path.split('.') {
                cur = match cur {
                    serde_json::Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                    serde_json::Value::Object(o) => o.get(key),
                    _ => None,
                }
                .ok_or_else(|| format!("JSON path {path:?}: no {key:?} in the output"))?;
            }
            match cur {
                serde_json::Value::Number(n) => n
                    .as_f64()
                    .ok_or_else(|| format!("JSON path {path:?}: not a finite number")),
                serde_json::Value::String(s) => parse_number(s)
                    .ok_or_else(|| format!("JSON path {path:?} is {s:?}, not a number")),
                other => Err(format!("JSON path {path:?} is {other}, not a number")),
            }
        }
        Extraction::Line(n) => {
            let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
            let idx = if *n > 0 {
                (*n as usize).checked_sub(1)
            } else {
                lines.len().checked_sub(n.unsigned_abs() as usize)
            };
            let line = idx.and_then(|i| lines.get(i)).ok_or_else(|| {
                format!(
                    "line {n}: the output has only {} non-empty lines",
                    lines.len()
                )
            })?;
            last_number(line)?.ok_or_else(|| format!("line {n} ({line:?}) has no number"))
        }
        Extraction::LastNumber => match last_number(stdout)? {
            Some(v) => Ok(v),
            None => last_number(stderr)?.ok_or_else(|| "the output has no number".to_string()),
        },
        Extraction::Time(_) => {
            Err("timed metrics are read from the process, not its output".into())
        }
    }
}

fn last_json_line(s: &str) -> Result<serde_json::Value, serde_json::Error> {
    let line = s
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(['{', '[']))
        .unwrap_or("");
    serde_json::from_str(line)
}

/// A number a regex captured (or a JSON string held): decimal, `.` as the decimal point;
/// thousands separators in groups of three are dropped (`1,234.5`). A decimal comma
/// (`1,5`) or a hexadecimal literal is refused: read as something else it would be wrong
/// silently.
fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.contains(',') && !thousands_regex().is_match(t) {
        return None;
    }
    t.replace(',', "")
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// The last decimal number in `text` (integers, decimals, exponents, signs). Err when that
/// last number is ambiguous: glued to another by a comma (`1,5`: a decimal comma? a
/// thousands separator? a list?) or hexadecimal (`0x3`); a regex must say what to read.
pub fn last_number(text: &str) -> Result<Option<f64>, String> {
    let Some(m) = number_regex().find_iter(text).last() else {
        return Ok(None);
    };
    let token = m.as_str();
    if token.starts_with("0x") || token.starts_with("0X") {
        return Err(format!(
            "the last number is {token:?}, a hexadecimal literal: arctl reads decimal numbers; give metric.regex to say what to read"
        ));
    }
    let before = text[..m.start()].chars().rev().take(2).collect::<String>();
    let after = text[m.end()..].chars().take(2).collect::<String>();
    let glued = |two: &str, comma_first: bool| {
        let mut c = two.chars();
        let (a, b) = (c.next(), c.next());
        if comma_first {
            a == Some(',') && b.is_some_and(|b| b.is_ascii_digit())
        } else {
            b == Some(',') && a.is_some_and(|a| a.is_ascii_digit())
        }
    };
    // `before` is reversed: its first char is the one right before the token.
    if glued(&before, true) || glued(&after, true) {
        let start = text[..m.start()]
            .rfind(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let end = m.end()
            + text[m.end()..]
                .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
                .unwrap_or(text.len() - m.end());
        return Err(format!(
            "the last number is {:?}, which is ambiguous (a decimal comma, a thousands separator or a list?): arctl reads '.' as the decimal point; give metric.regex to say what to read",
            &text[start..end]
        ));
    }
    Ok(parse_number(token))
}

fn number_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"0[xX][0-9A-Fa-f]+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
            .expect("static regex")
    })
}

fn thousands_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?(?:[eE][-+]?\d+)?$")
            .expect("static regex")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_of_reading() {
        let re = Extraction::Regex(regex::Regex::new(r"mean: ([0-9.eE+-]+)").unwrap());
        assert_eq!(extract(&re, "x\nmean: 1.5e-3 s\n", ""), Ok(0.0015));
        assert!(extract(&re, "nothing", "")
            .unwrap_err()
            .contains("matched nothing"));
        let j = Extraction::Json("results.0.mean".into());
        assert_eq!(extract(&j, r#"{"results":[{"mean":2.5}]}"#, ""), Ok(2.5));
        assert_eq!(
            extract(&j, "log line\n{\"results\":[{\"mean\":3}]}\n", ""),
            Ok(3.0)
        );
        assert!(extract(&j, r#"{"results":[]}"#, "").is_err());
        let l = Extraction::Line(-1);
        assert_eq!(extract(&l, "a 1\nb 2\n\n", ""), Ok(2.0));
        assert_eq!(extract(&Extraction::Line(1), "a 1\nb 2\n", ""), Ok(1.0));
        assert!(extract(&Extraction::Line(5), "a 1\n", "").is_err());
        assert_eq!(
            extract(&Extraction::LastNumber, "12 passed, 3 failed in 0.52s", ""),
            Ok(0.52)
        );
        assert_eq!(
            extract(&Extraction::LastNumber, "val_loss=-1.25", ""),
            Ok(-1.25)
        );
        assert!(extract(&Extraction::LastNumber, "no digits", "").is_err());
    }

    #[test]
    fn ambiguous_numbers_are_refused_not_misread() {
        let last = |s: &str| extract(&Extraction::LastNumber, s, "");
        let e = last("score 1,5").unwrap_err();
        assert!(e.contains("\"1,5\"") && e.contains("metric.regex"), "{e}");
        assert!(last("total 1,234").is_err());
        let e = last("flags 0x3").unwrap_err();
        assert!(e.contains("hexadecimal"), "{e}");
        // Commas that separate words, not digits, are fine.
        assert_eq!(last("12 passed, 3 failed in 0.52s"), Ok(0.52));
        assert_eq!(last("name,time\nfoo,0.52"), Ok(0.52));
        // A regex says what to read: thousands groups are fine, a decimal comma is not.
        let re = |r: &str| Extraction::Regex(regex::Regex::new(r).unwrap());
        assert_eq!(
            extract(&re(r"tps = ([0-9,.]+)"), "tps = 1,234.5", ""),
            Ok(1234.5)
        );
        assert!(extract(&re(r"score ([0-9,]+)"), "score 1,5", "").is_err());
    }
}
