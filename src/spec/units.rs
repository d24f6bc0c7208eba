//! The spec's value types: run ids, durations, sizes, timeouts, percentages, globs and
//! regexes. Each has a textual form ("90s", "4GiB", "2x", "1%") and a newtype whose
//! `Deserialize` validates it, so toml attaches the value's span to the error and the user
//! sees exactly where the problem is. Kept apart from the spec's tables because other
//! modules use them on their own (`RunId`, `parse_duration`, `format_size`).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A run id: `[a-z0-9][a-z0-9-]{0,47}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    pub fn parse(s: &str) -> Result<RunId, String> {
        let ok = !s.is_empty()
            && s.len() <= 48
            && s.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'));
        if ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(format!(
                "invalid run id {s:?}: expected 1-48 characters of a-z, 0-9 and '-', starting with a letter or digit"
            ))
        }
    }

    /// Derive an id from a spec file name: `ETL Runtime.toml` -> `etl-runtime`.
    pub fn from_file_name(path: &Path) -> Option<RunId> {
        let stem = path.file_stem()?.to_string_lossy().to_lowercase();
        let mut id = String::new();
        for c in stem.chars() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                id.push(c);
            } else if !id.is_empty() && !id.ends_with('-') {
                id.push('-');
            }
        }
        let id = id.trim_end_matches('-');
        let id: String = id.chars().take(48).collect();
        RunId::parse(id.trim_end_matches('-')).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Implements Serialize/Deserialize through the type's canonical string form.
macro_rules! string_serde {
    ($t:ty, $parse:expr, $show:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                #[allow(clippy::redundant_closure_call)]
                s.serialize_str(&($show)(self))
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                #[allow(clippy::redundant_closure_call)]
                ($parse)(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(RunId, RunId::parse, |v: &RunId| v.0.clone());

/// A duration written like `90s`, `10m`, `8h`, `1h30m`, `500ms`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = || {
        format!("invalid duration {s:?}: expected a number with a unit (ms, s, m, h, d), e.g. \"90s\", \"10m\", \"8h\", \"1h30m\"")
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(expected());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(expected)?;
        if num_len == 0 {
            return Err(expected());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| expected())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit.trim() {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(expected()),
        };
        total += n * secs;
    }
    if !total.is_finite() || total <= 0.0 {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    if total > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "invalid duration {s:?}: at most {} (a year)",
            format_duration(MAX_DURATION)
        ));
    }
    Duration::try_from_secs_f64(total).map_err(|_| expected())
}

/// The longest duration a spec may give (a timeout, a budget): longer is surely a typo.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86400);
/// The largest timeout factor: beyond it a factor means no timeout at all.
pub const MAX_FACTOR: f64 = 1000.0;
/// The largest size a spec may give (a memory limit).
pub const MAX_SIZE: u64 = 1 << 50;

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s.is_multiple_of(86400) {
        format!("{}d", s / 86400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

string_serde!(
    HumanDuration,
    |s: &str| parse_duration(s).map(HumanDuration),
    |v: &HumanDuration| format_duration(v.0)
);

/// The metric's timeout: a multiple of the baseline's duration, or a fixed duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricTimeout {
    Factor(f64),
    Fixed(Duration),
}

impl Default for MetricTimeout {
    fn default() -> Self {
        MetricTimeout::Factor(2.0)
    }
}

fn parse_metric_timeout(s: &str) -> Result<MetricTimeout, String> {
    if let Some(f) = s.trim().strip_suffix('x') {
        return match f.parse::<f64>() {
            Ok(v) if v.is_finite() && (1.0..=MAX_FACTOR).contains(&v) => Ok(MetricTimeout::Factor(v)),
            _ => Err(format!(
                "invalid timeout {s:?}: expected a factor of the baseline's duration from 1 to {MAX_FACTOR}, e.g. \"2x\", or a duration like \"90s\""
            )),
        };
    }
    parse_duration(s).map(MetricTimeout::Fixed).map_err(|e| {
        if e.contains("at most") {
            e
        } else {
            format!("invalid timeout {s:?}: expected a factor of the baseline's duration like \"2x\", or a duration like \"90s\"")
        }
    })
}

string_serde!(
    MetricTimeout,
    parse_metric_timeout,
    |v: &MetricTimeout| match v {
        MetricTimeout::Factor(f) => format!("{f}x"),
        MetricTimeout::Fixed(d) => format_duration(*d),
    }
);

/// A byte size written like `4GiB`, `512MiB`, `1GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

pub fn parse_size(s: &str) -> Result<u64, String> {
    let expected = || {
        format!("invalid size {s:?}: expected a number with a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB), e.g. \"4GiB\"")
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(expected)?;
    let n: f64 = t[..split].parse().map_err(|_| expected())?;
    let mult: u64 = match t[split..].trim() {
        "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(expected()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("invalid size {s:?}: must be at least 1 byte"));
    }
    if bytes > MAX_SIZE as f64 {
        return Err(format!(
            "invalid size {s:?}: at most {}",
            format_size(MAX_SIZE)
        ));
    }
    Ok(bytes as u64)
}

pub fn format_size(b: u64) -> String {
    for (unit, m) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if b >= m && b.is_multiple_of(m) {
            return format!("{}{unit}", b / m);
        }
    }
    if b >= 1 << 20 {
        return format!("{:.1}MiB", b as f64 / (1u64 << 20) as f64);
    }
    format!("{b}B")
}

string_serde!(
    ByteSize,
    |s: &str| parse_size(s).map(ByteSize),
    |v: &ByteSize| format_size(v.0)
);

/// A relative effect written as a percentage: `"1%"`, stored as a fraction (0.01).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

fn parse_percent(s: &str) -> Result<Percent, String> {
    let err =
        || format!("invalid percentage {s:?}: expected a percentage from 0% to 100%, e.g. \"1%\"");
    let n: f64 = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(err)?
        .trim()
        .parse()
        .map_err(|_| err())?;
    if !(0.0..=100.0).contains(&n) {
        return Err(err());
    }
    Ok(Percent(n / 100.0))
}

string_serde!(Percent, parse_percent, |v: &Percent| format!(
    "{}%",
    (v.0 * 100.0 * 1e6).round() / 1e6
));

/// A glob over repository paths (validated with globset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(pub String);

impl Glob {
    pub fn parse(s: &str) -> Result<Glob, String> {
        if s.trim().is_empty() {
            return Err(
                "invalid glob \"\": expected a pattern over repo paths like \"src/**\"".into(),
            );
        }
        if s.starts_with('/') || s.split('/').any(|c| c == "..") {
            return Err(format!(
                "invalid glob {s:?}: expected a path pattern relative to the repo root (no leading '/', no '..')"
            ));
        }
        build_glob(s).map_err(|e| format!("invalid glob {s:?}: {}", e.kind()))?;
        Ok(Glob(s.to_string()))
    }

    /// The compiled matcher (`*` stops at `/`, `**` spans folders).
    pub fn matcher(&self) -> globset::GlobMatcher {
        build_glob(&self.0)
            .expect("a Glob is checked when it is parsed")
            .compile_matcher()
    }
}

/// How arctl reads every glob over repo paths: `*` does not cross `/`.
pub fn build_glob(s: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(s).literal_separator(true).build()
}

string_serde!(Glob, Glob::parse, |v: &Glob| v.0.clone());

/// A regular expression with exactly the capture groups a use needs (checked later).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

string_serde!(
    Pattern,
    |s: &str| regex::Regex::new(s)
        .map(Pattern)
        .map_err(|e| format!("invalid regex {s:?}: {e}")),
    |v: &Pattern| v.0.as_str().to_string()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_durations_sizes_and_factors_are_refused_not_panicked_on() {
        for d in ["99999999999999999h", "99999999999999999999s", "400d"] {
            let e = parse_duration(d).unwrap_err();
            assert!(e.contains("at most 366d"), "{d}: {e}");
        }
        assert!(parse_duration("366d").is_ok());
        for t in ["1e30x", "1001x", "0.5x", "infx", "NaNx"] {
            assert!(parse_metric_timeout(t).is_err(), "{t}");
        }
        assert!(parse_metric_timeout("99999999999999999999s")
            .unwrap_err()
            .contains("at most"));
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("at most"));
    }

    #[test]
    fn durations_sizes_percentages() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert!(parse_size("4 gigs").is_err());
        assert!(parse_size("GiB").is_err());
        assert_eq!(
            parse_metric_timeout("2x").unwrap(),
            MetricTimeout::Factor(2.0)
        );
        assert_eq!(
            parse_metric_timeout("90s").unwrap(),
            MetricTimeout::Fixed(Duration::from_secs(90))
        );
        assert!(parse_metric_timeout("0.5x").is_err());
        assert_eq!(parse_percent("1%").unwrap(), Percent(0.01));
        assert!(parse_percent("1").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(format_size(4 << 30), "4GiB");
    }

    #[test]
    fn run_ids() {
        assert!(RunId::parse("etl-runtime").is_ok());
        assert!(RunId::parse("../x").is_err());
        assert!(RunId::parse("-x").is_err());
        assert!(RunId::parse("X").is_err());
        assert!(RunId::parse(&"a".repeat(49)).is_err());
        assert_eq!(
            RunId::from_file_name(Path::new("My ETL_run.toml"))
                .unwrap()
                .as_str(),
            "my-etl-run"
        );
        assert!(RunId::from_file_name(Path::new("___.toml")).is_none());
    }
}
