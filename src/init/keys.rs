//! The spec's keys as `arctl init` knows them: their kinds, the order the written file has
//! them in, and how a `--set KEY=VALUE` text becomes a checked TOML value (with a "did you
//! mean" for a mistyped key).

use toml::{Table, Value};

use crate::protocol::Error;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Str,
    Int,
    Float,
    Bool,
    StrList,
    Repeats,
    /// An array of tables (`[[guard]]`, `[[proposer.param]]`): a table appends, an array replaces.
    Tables,
    Choice(&'static [&'static str]),
}

/// Every key of the spec, in the order the written file has them.
pub(super) const KEYS: &[(&str, Kind)] = &[
    ("id", Kind::Str),
    ("repo", Kind::Str),
    ("base", Kind::Str),
    ("goal", Kind::Str),
    ("metric.command", Kind::Str),
    ("metric.regex", Kind::Str),
    ("metric.json", Kind::Str),
    ("metric.line", Kind::Int),
    (
        "metric.time",
        Kind::Choice(&["wall", "cpu", "instructions"]),
    ),
    ("metric.direction", Kind::Choice(&["lower", "higher"])),
    ("metric.timeout", Kind::Str),
    ("metric.repeats", Kind::Repeats),
    ("metric.min_effect", Kind::Str),
    ("metric.alpha", Kind::Float),
    ("scope.include", Kind::StrList),
    ("scope.exclude", Kind::StrList),
    ("guard", Kind::Tables),
    ("budget.max_experiments", Kind::Int),
    ("budget.max_wall", Kind::Str),
    ("budget.patience", Kind::Int),
    ("budget.max_cost", Kind::Float),
    ("limits.memory", Kind::Str),
    ("limits.cpu_time", Kind::Str),
    ("limits.cpus", Kind::Int),
    ("limits.measure", Kind::Choice(&["exclusive", "shared"])),
    ("limits.output", Kind::Str),
    (
        "proposer.kind",
        Kind::Choice(&["agent", "params", "patches"]),
    ),
    (
        "proposer.preset",
        Kind::Choice(&["claude", "codex", "aider", "gemini", "opencode"]),
    ),
    ("proposer.command", Kind::Str),
    ("proposer.prompt", Kind::Str),
    ("proposer.timeout", Kind::Str),
    ("proposer.dir", Kind::Str),
    ("proposer.param", Kind::Tables),
    ("proposer.strategy", Kind::Choice(&["hill-climb", "random"])),
    ("proposer.seed", Kind::Int),
    ("policy.simplicity", Kind::Bool),
    ("policy.web_search", Kind::Choice(&["yes", "ask", "no"])),
    ("policy.constraints", Kind::StrList),
    ("setup.copy", Kind::StrList),
    ("setup.command", Kind::Str),
    ("setup.timeout", Kind::Str),
    ("notify.on_keep", Kind::Str),
    ("notify.on_finish", Kind::Str),
    ("notify.on_fail", Kind::Str),
];

pub(super) const EXTRACTION_KEYS: [&str; 4] =
    ["metric.regex", "metric.json", "metric.line", "metric.time"];

pub(super) fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(super) fn unknown_key(key: &str) -> Error {
    let best = KEYS
        .iter()
        .map(|(k, _)| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    let all: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    Error::bad_input(format!(
        "--set {key}: unknown key{best}\n  keys: {}, guard.NAME (a guard's command)",
        all.join(", ")
    ))
}

/// A scalar's text as the user typed it (for string keys given `1` or `true`).
pub(super) fn scalar_text(v: &Value, raw: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => {
            Some(raw.to_string())
        }
        _ => None,
    }
}

/// Parse one `--set` value: TOML syntax, else the bare text as a string.
pub(super) fn parse_value(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

/// Check and convert a value for `key`; the error names the key.
pub(super) fn coerce(key: &str, kind: Kind, v: Value, raw: &str) -> Result<Value, Error> {
    let bad = |what: &str| Error::bad_input(format!("--set {key}={raw}: expected {what}"));
    Ok(match kind {
        Kind::Str => Value::String(scalar_text(&v, raw).ok_or_else(|| bad("a string"))?),
        Kind::Int => match v {
            Value::Integer(_) => v,
            _ => return Err(bad("a whole number")),
        },
        Kind::Float => match v {
            Value::Float(_) => v,
            Value::Integer(i) => Value::Float(i as f64),
            _ => return Err(bad("a number")),
        },
        Kind::Bool => match v {
            Value::Boolean(_) => v,
            Value::String(s) if matches!(s.as_str(), "yes" | "on") => Value::Boolean(true),
            Value::String(s) if matches!(s.as_str(), "no" | "off") => Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        Kind::StrList => match v {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| scalar_text(i, &i.to_string()).map(Value::String))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("a list of strings"))?,
            ),
            other => Value::Array(vec![Value::String(scalar_text(&other, raw).ok_or_else(|| bad("a string or a list of strings"))?)]),
        },
        Kind::Repeats => match v {
            Value::Integer(_) => v,
            Value::String(s) if s == "auto" => Value::String(s),
            _ => return Err(bad("\"auto\" or a number of rounds")),
        },
        Kind::Tables => match v {
            Value::Table(_) => v,
            Value::Array(ref a) if a.iter().all(Value::is_table) => v,
            _ => return Err(bad("an inline table like {name = \"tests\", command = \"pytest -q\"} or a list of them")),
        },
        Kind::Choice(options) => {
            let s = scalar_text(&v, raw).unwrap_or_default().to_lowercase();
            if !options.contains(&s.as_str()) {
                return Err(bad(&format!("one of {}", options.join(", "))));
            }
            Value::String(s)
        }
    })
}
