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
            last_number(line).ok_or_else(|| format!("line {n} ({line:?}) has no number"))
        }
        Extraction::LastNumber => last_number(stdout)
            .or_else(|| last_number(stderr))
            .ok_or_else(|| "the output has no number".to_string()),
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

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim().replace(',', "");
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The last decimal number in `text` (integers, decimals, exponents, signs).
pub fn last_number(text: &str) -> Option<f64> {
    let re = number_regex();
    re.find_iter(text)
        .filter_map(|m| parse_number(m.as_str()))
        .last()
}

fn number_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?").expect("static regex")
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
}
