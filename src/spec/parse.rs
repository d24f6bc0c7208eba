//! Parsing and validating spec text, with every error located at file:line:column. toml
//! locates what serde rejects (unknown keys, bad values); the cross-field rules are checked
//! after parsing, one function per table, and located by key. Parsing does not probe the
//! host: the checks that depend on the machine (can it count instructions?) are
//! [`check_host`]'s, with the facts found out by the caller, so a spec parses the same way
//! in a test, in the client and in the daemon.

use std::path::{Path, PathBuf};

use super::types::{
    ExecutorKind, MetricSpec, ParamSpec, ProposerKind, ResolvedSpec, RunSpec, SandboxMode, TimeMode,
};
use super::units::RunId;
use super::SpecError;

/// Read and validate a spec file.
pub fn load(path: &Path) -> Result<ResolvedSpec, SpecError> {
    load_text(path).map(|(resolved, _)| resolved)
}

/// [`load`], also returning the file's text: what [`check_host`] locates its errors in.
pub fn load_text(path: &Path) -> Result<(ResolvedSpec, String), SpecError> {
    let unreadable = |message: String| SpecError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message,
        source_line: None,
    };
    let text = read_capped(path).map_err(unreadable)?;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let resolved = parse(&text, &abs)?;
    Ok((resolved, text))
}

/// The largest spec arctl reads: a real one is a few KiB; `/dev/zero` or a log file named
/// by mistake must not be read without end.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// A spec file's text, at most [`MAX_SPEC_BYTES`]; Err says why it cannot be read.
fn read_capped(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read the spec: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the spec: {e}"))?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(format!(
            "the spec is larger than {} KiB: expected a TOML run spec of a few KiB",
            MAX_SPEC_BYTES >> 10
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| "the spec is not UTF-8 text: expected a TOML run spec".into())
}

/// Parse and validate spec text; `file` is used for error messages, the default id and
/// resolving relative paths.
pub fn parse(text: &str, file: &Path) -> Result<ResolvedSpec, SpecError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(SpecError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: format!(
                "the spec is larger than {} KiB: expected a TOML run spec of a few KiB",
                MAX_SPEC_BYTES >> 10
            ),
            source_line: None,
        });
    }
    let spec: RunSpec = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_string();
        let offset = e.span().map_or(0, |s| element_offset(text, s, &message));
        located_at_offset(text, file, offset, message)
    })?;
    let mut spec = spec;
    let src = Source { text, file };
    expand_preset(&mut spec, &src)?;
    // The order of the checks is the order in which problems are reported.
    let id = resolve_id(&spec, &src)?;
    check_executor(&spec, &src)?;
    check_metric(&spec.metric, &src)?;
    check_scope(&spec, &src)?;
    check_sandbox(&spec, &src)?;
    check_guards(&spec, &src)?;
    check_budget_and_limits(&spec, &src)?;
    check_proposer(&spec, &src)?;
    check_setup(&spec, &src)?;

    let repo = file.parent().unwrap_or(Path::new("/")).join(&spec.repo);
    let repo = normalize(&repo);
    Ok(ResolvedSpec {
        id,
        spec_file: file.to_path_buf(),
        repo,
        spec,
    })
}

/// What the machine the run measures on can do, found out by the caller (`spec` does not
/// probe the host).
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Whether user-space instructions can be counted; Err says why not.
    pub instructions: Result<(), String>,
    /// The Landlock ABI version the kernel offers; Err says why there is none.
    pub landlock: Result<u32, String>,
    /// Whether children can get a network namespace of their own; Err says why not.
    pub network_namespaces: Result<(), String>,
}

impl HostFacts {
    /// A machine that offers everything (tests of the checks that do not probe).
    pub fn everything() -> HostFacts {
        HostFacts {
            instructions: Ok(()),
            landlock: Ok(7),
            network_namespaces: Ok(()),
        }
    }
}

/// The checks of a parsed spec that depend on the host: `metric.time = "instructions"`
/// needs an instruction counter. `text` is the spec's text, to locate the error.
pub fn check_host(resolved: &ResolvedSpec, text: &str, facts: &HostFacts) -> Result<(), SpecError> {
    if resolved.spec.metric.time == Some(TimeMode::Instructions) {
        if let Err(why) = &facts.instructions {
            let src = Source {
                text,
                file: &resolved.spec_file,
            };
            return Err(src.at_key(Some("metric"), "time", format!("metric.time = \"instructions\" is not available on this machine: {why}; use \"cpu\" or \"wall\"")));
        }
    }
    check_sandbox_host(resolved, text, facts)
}

/// `[sandbox]` against the host: an explicit `mode = "enforce"` needs Landlock, and
/// `network = false` for commands of this machine needs network namespaces.
fn check_sandbox_host(
    resolved: &ResolvedSpec,
    text: &str,
    facts: &HostFacts,
) -> Result<(), SpecError> {
    let src = Source {
        text,
        file: &resolved.spec_file,
    };
    let sb = &resolved.spec.sandbox;
    if sb.mode == Some(SandboxMode::Enforce) {
        if let Err(why) = &facts.landlock {
            return Err(src.at_key(Some("sandbox"), "mode", format!("sandbox mode \"enforce\" needs Landlock, which this machine does not offer ({why}); use mode = \"detect\"")));
        }
    }
    let local = resolved.spec.executor.as_ref().is_none_or(|e| e.is_local());
    if !sb.network && local {
        if let Err(why) = &facts.network_namespaces {
            return Err(src.at_key(Some("sandbox"), "network", format!("sandbox network = false needs network namespaces, which this machine does not offer ({why}); remove it")));
        }
    }
    Ok(())
}

/// Parse a spec and check it against this host's facts: what `validate`, `init` and
/// `start` (client and daemon) accept.
pub fn parse_for_host(
    text: &str,
    file: &Path,
    facts: &HostFacts,
) -> Result<ResolvedSpec, SpecError> {
    let resolved = parse(text, file)?;
    check_host(&resolved, text, facts)?;
    Ok(resolved)
}

/// The spec's text and file, to locate the errors of the cross-field checks.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Source<'_> {
    fn at(&self, line: usize, column: usize, message: String) -> SpecError {
        error_at(self.text, self.file, line, column, message)
    }

    /// An error at the value of `key` in `[table]` (the table's header if the key is not
    /// written: a default is at fault; the file's start if neither is).
    fn at_key(&self, table: Option<&str>, key: &str, message: String) -> SpecError {
        let (line, column) = find_key(self.text, table, key).unwrap_or((1, 1));
        self.at(line, column, message)
    }

    /// An error at the header of the n-th `[[name]]` table.
    fn at_nth_table(&self, name: &str, n: usize, message: String) -> SpecError {
        let (line, column) = find_nth_table(self.text, name, n).unwrap_or((1, 1));
        self.at(line, column, message)
    }

    /// `p`, relative to the spec file's folder.
    fn relative(&self, p: &Path) -> PathBuf {
        self.file.parent().unwrap_or(Path::new("/")).join(p)
    }
}

/// The run id: the spec's `id`, else derived from the file name.
fn resolve_id(spec: &RunSpec, src: &Source) -> Result<RunId, SpecError> {
    match &spec.id {
        Some(id) => Ok(id.clone()),
        None => RunId::from_file_name(src.file).ok_or_else(|| {
            src.at(
                1,
                1,
                format!(
                    "no `id` given and the file name {:?} does not make a valid run id: add `id = \"my-run\"` ([a-z0-9][a-z0-9-]{{0,47}})",
                    src.file.file_name().unwrap_or_default()
                ),
            )
        }),
    }
}

/// `[executor]`: its own problems, and what a Slurm cluster cannot do.
fn check_executor(spec: &RunSpec, src: &Source) -> Result<(), SpecError> {
    let Some(e) = &spec.executor else {
        return Ok(());
    };
    if let Some((key, msg)) = e.problem() {
        return Err(src.at_key(Some("executor"), key, msg));
    }
    if e.kind == ExecutorKind::Slurm {
        if let Some(t @ (TimeMode::Cpu | TimeMode::Instructions)) = spec.metric.time {
            let t = format!("{t:?}").to_lowercase();
            return Err(src.at_key(Some("metric"), "time", format!("metric.time = \"{t}\" cannot be measured on a Slurm cluster: use \"wall\" or a number the command prints")));
        }
        if e.proposer_on_cluster && spec.proposer.kind != ProposerKind::Agent {
            return Err(src.at_key(
                Some("executor"),
                "proposer_on_cluster",
                "executor.proposer_on_cluster only applies to proposer kind = \"agent\"".into(),
            ));
        }
    }
    Ok(())
}

/// `[metric]`: a command, at most one way to read the number, and a usable one; α.
fn check_metric(m: &MetricSpec, src: &Source) -> Result<(), SpecError> {
    if m.command.trim().is_empty() {
        return Err(src.at_key(
            Some("metric"),
            "command",
            "metric.command is empty: expected the shell command that produces the metric".into(),
        ));
    }
    let ways: Vec<&str> = [
        ("regex", m.regex.is_some()),
        ("json", m.json.is_some()),
        ("line", m.line.is_some()),
        ("time", m.time.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| *k)
    .collect();
    if ways.len() > 1 {
        return Err(src.at_key(
            Some("metric"),
            ways[1],
            format!(
                "metric has both `{}` and `{}`: expected at most one of regex, json, line, time",
                ways[0], ways[1]
            ),
        ));
    }
    if let Some(r) = &m.regex {
        if r.0.captures_len() < 2 {
            return Err(src.at_key(
                Some("metric"),
                "regex",
                format!(
                    "metric.regex {:?} has no capture group: expected one, e.g. 'mean: ([0-9.]+)'",
                    r.0.as_str()
                ),
            ));
        }
    }
    if let Some(j) = &m.json {
        if j.is_empty() || j.split('.').any(|p| p.is_empty()) {
            return Err(src.at_key(
                Some("metric"),
                "json",
                format!("metric.json {j:?}: expected a dotted path like \"results.0.mean\""),
            ));
        }
    }
    if m.line == Some(0) {
        return Err(src.at_key(
            Some("metric"),
            "line",
            "metric.line = 0: expected a line number (1 is the first, -1 the last)".into(),
        ));
    }
    if !(m.alpha > 0.0 && m.alpha < 0.5) {
        return Err(src.at_key(
            Some("metric"),
            "alpha",
            format!(
                "metric.alpha = {}: expected a significance level between 0 and 0.5, e.g. 0.05",
                m.alpha
            ),
        ));
    }
    Ok(())
}

/// `[sandbox] writable`: real paths.
fn check_sandbox(spec: &RunSpec, src: &Source) -> Result<(), SpecError> {
    for w in &spec.sandbox.writable {
        if w.trim().is_empty() || w.contains('\0') {
            return Err(src.at_key(Some("sandbox"), "writable", format!("sandbox.writable: {w:?} is not a path: expected folders or files the children may write, e.g. [\"~/.cache/uv\"]")));
        }
        if w.trim() == "/" {
            return Err(src.at_key(Some("sandbox"), "writable", "sandbox.writable: \"/\" would make the whole machine writable: name the folders, or set mode = \"off\"".into()));
        }
    }
    Ok(())
}

/// `[scope]`: something to edit.
fn check_scope(spec: &RunSpec, src: &Source) -> Result<(), SpecError> {
    if spec.scope.include.is_empty() {
        return Err(src.at_key(Some("scope"), "include", "scope.include is empty: expected at least one glob of editable paths, e.g. [\"src/**\"]".into()));
    }
    Ok(())
}

/// `[[guard]]`: each named, each with a command.
fn check_guards(spec: &RunSpec, src: &Source) -> Result<(), SpecError> {
    for (i, g) in spec.guards.iter().enumerate() {
        if g.command.trim().is_empty() || g.name.trim().is_empty() {
            return Err(src.at_nth_table(
                "guard",
                i,
                format!("guard #{}: `name` and `command` must not be empty", i + 1),
            ));
        }
    }
    Ok(())
}

/// `[budget]` and `[limits]`: no zero that would stop a run before it starts.
fn check_budget_and_limits(spec: &RunSpec, src: &Source) -> Result<(), SpecError> {
    if spec.budget.max_experiments == Some(0) {
        return Err(src.at_key(
            Some("budget"),
            "max_experiments",
            "budget.max_experiments = 0: expected at least 1 (or leave it out for no limit)".into(),
        ));
    }
    if spec.budget.patience == Some(0) {
        return Err(src.at_key(
            Some("budget"),
            "patience",
            "budget.patience = 0: expected at least 1 experiment without a keep before stopping (or leave it out)".into(),
        ));
    }
    if let Some(c) = spec.budget.max_cost {
        if !(c.is_finite() && c > 0.0 && c <= 1e6) {
            return Err(src.at_key(
                Some("budget"),
                "max_cost",
                format!("budget.max_cost = {c}: expected US dollars above 0, e.g. 20.0"),
            ));
        }
    }
    if let Some(o) = spec.limits.output {
        if !(1024..=64 << 20).contains(&o.0) {
            return Err(src.at_key(
                Some("limits"),
                "output",
                format!(
                    "limits.output = {:?}: expected 1KiB to 64MiB (the head and the tail of each output stream that are kept)",
                    crate::spec::format_size(o.0)
                ),
            ));
        }
    }
    if spec.limits.cpus == Some(0) {
        return Err(src.at_key(
            Some("limits"),
            "cpus",
            "limits.cpus = 0: expected at least 1 (or leave it out)".into(),
        ));
    }
    Ok(())
}

/// `[setup]`: environment names a shell accepts, and not arctl's own.
fn check_setup(spec: &RunSpec, src: &Source) -> Result<(), SpecError> {
    for key in spec.setup.env.keys() {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || key.starts_with("ARCTL_") {
            // At `env` itself: a key inside an inline table has no position of its own here.
            return Err(src.at_key(
                Some("setup"),
                "env",
                format!("setup.env {key:?}: expected an environment variable name like PYTHONHASHSEED (letters, digits, _; not ARCTL_*)"),
            ));
        }
    }
    if spec
        .setup
        .command
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        return Err(src.at_key(
            Some("setup"),
            "command",
            "setup.command is empty: expected a command like \"uv sync\" (or leave it out)".into(),
        ));
    }
    Ok(())
}

/// `proposer.preset`: a known agent; its command line unless the spec gives its own.
fn expand_preset(spec: &mut RunSpec, src: &Source) -> Result<(), SpecError> {
    let Some(name) = spec.proposer.preset.clone() else {
        return Ok(());
    };
    let Some(p) = super::presets::find(&name) else {
        return Err(src.at_key(
            Some("proposer"),
            "preset",
            format!(
                "proposer.preset {name:?}: expected one of {}",
                super::presets::names().join(", ")
            ),
        ));
    };
    if spec.proposer.kind != ProposerKind::Agent {
        return Err(src.at_key(
            Some("proposer"),
            "preset",
            format!("proposer.preset {name:?} is an agent: it needs kind = \"agent\""),
        ));
    }
    if spec.proposer.command.is_none() {
        spec.proposer.command = Some(p.command.to_string());
    }
    Ok(())
}

/// `[proposer]`: what its kind needs (files relative to the spec file must exist).
fn check_proposer(spec: &RunSpec, src: &Source) -> Result<(), SpecError> {
    let p = &spec.proposer;
    match p.kind {
        ProposerKind::Agent => {
            if p.command.as_deref().map(str::trim).unwrap_or("").is_empty() {
                return Err(src.at_key(Some("proposer"), "kind", "proposer kind \"agent\" needs `command` or `preset`: expected the agent command, e.g. command = \"claude -p\", or preset = \"claude\"".into()));
            }
            if let Some(prompt) = &p.prompt {
                let path = src.relative(prompt);
                if !path.is_file() {
                    return Err(src.at_key(
                        Some("proposer"),
                        "prompt",
                        format!(
                            "proposer.prompt {}: no such file (relative to the spec file)",
                            path.display()
                        ),
                    ));
                }
            }
        }
        ProposerKind::Patches => {
            let Some(dir) = &p.dir else {
                return Err(src.at_key(Some("proposer"), "kind", "proposer kind \"patches\" needs `dir`: expected a folder of *.patch files, e.g. dir = \"hypotheses/\"".into()));
            };
            let path = src.relative(dir);
            if !path.is_dir() {
                return Err(src.at_key(
                    Some("proposer"),
                    "dir",
                    format!(
                        "proposer.dir {}: no such folder (relative to the spec file)",
                        path.display()
                    ),
                ));
            }
        }
        ProposerKind::Params => {
            if p.params.is_empty() {
                return Err(src.at_key(Some("proposer"), "kind", "proposer kind \"params\" needs at least one [[proposer.param]] with file, regex and values (or min/max/step)".into()));
            }
            for (i, param) in p.params.iter().enumerate() {
                check_param(param, i, src)?;
            }
        }
    }
    if p.kind != ProposerKind::Agent && p.prompt.is_some() {
        return Err(src.at_key(
            Some("proposer"),
            "prompt",
            "proposer.prompt is only used by kind = \"agent\"".into(),
        ));
    }
    Ok(())
}

/// The `i`-th `[[proposer.param]]`: a capture group, values or a range, a repo path.
fn check_param(param: &ParamSpec, i: usize, src: &Source) -> Result<(), SpecError> {
    let here = |msg: String| {
        src.at_nth_table(
            "proposer.param",
            i,
            format!("proposer.param #{}: {msg}", i + 1),
        )
    };
    if param.regex.0.captures_len() < 2 {
        return Err(here(
            "regex has no capture group: expected one around the value, e.g. 'BATCH = (\\d+)'"
                .into(),
        ));
    }
    match (&param.values, param.min, param.max, param.step) {
        (Some(v), None, None, None) if !v.is_empty() => {}
        (None, Some(min), Some(max), Some(step)) if step > 0.0 && max >= min => {}
        _ => return Err(here("expected either a non-empty `values` list or all of `min`, `max` and `step` (step > 0, max >= min)".into())),
    }
    if param.file.is_absolute()
        || param
            .file
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(here(format!(
            "file {:?}: expected a path relative to the repo root",
            param.file
        )));
    }
    Ok(())
}

/// Lexically clean `a/./b/../c` -> `a/c` (no symlink resolution).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// toml reports a bad element of an array at the array's `[`: point at the element whose
/// literal the message quotes (our value errors quote it: `invalid glob "a/[b": ...`).
fn element_offset(text: &str, span: std::ops::Range<usize>, message: &str) -> usize {
    let array = match text.get(span.clone()) {
        Some(a) if a.starts_with('[') => a,
        _ => return span.start,
    };
    let quoted = message.split('"').nth(1).filter(|q| !q.is_empty());
    quoted
        .and_then(|q| {
            [format!("\"{q}\""), format!("'{q}'")]
                .iter()
                .find_map(|lit| array.find(lit.as_str()))
        })
        .map_or(span.start, |i| span.start + i)
}

fn located_at_offset(text: &str, file: &Path, offset: usize, message: String) -> SpecError {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    error_at(text, file, line, column, message)
}

fn error_at(text: &str, file: &Path, line: usize, column: usize, message: String) -> SpecError {
    SpecError {
        file: file.to_path_buf(),
        line,
        column,
        message,
        source_line: text.lines().nth(line.saturating_sub(1)).map(str::to_string),
    }
}

/// Locate `key` (1-based line and column of its value) in `[table]`, or at the top level.
fn find_key(text: &str, table: Option<&str>, key: &str) -> Option<(usize, usize)> {
    let mut current: Option<String> = None;
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with('[') {
            let name = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if Some(name.as_str()) == table && table_line.is_none() {
                table_line = Some((i + 1, raw.len() - line.len() + 1));
            }
            current = Some(name);
            continue;
        }
        if current.as_deref() != table {
            continue;
        }
        if let Some(rest) = line.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                let eq = raw.find('=').unwrap_or(0);
                let val = raw[eq + 1..].len() - raw[eq + 1..].trim_start().len();
                return Some((i + 1, eq + 2 + val));
            }
        }
    }
    table_line
}

/// Locate the header of the n-th `[[name]]` array table.
fn find_nth_table(text: &str, name: &str, n: usize) -> Option<(usize, usize)> {
    let header = format!("[[{name}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().replace(' ', "") == header)
        .nth(n)
        .map(|(i, _)| (i + 1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;
    use std::time::Duration;

    const MINIMAL: &str = r#"
[metric]
command = "python bench.py"
direction = "lower"

[scope]
include = ["src/**"]

[proposer]
command = "claude -p"
"#;

    fn p(text: &str) -> Result<ResolvedSpec, SpecError> {
        parse(text, Path::new("/tmp/specs/etl-runtime.toml"))
    }

    #[test]
    fn a_bad_setup_env_name_is_located_at_its_line() {
        let e = p(&format!(
            "{MINIMAL}\n[setup]\nenv = {{ ARCTL_RUN_ID = \"x\" }}\n"
        ))
        .unwrap_err();
        assert_eq!((e.line, e.column), (13, 7), "{e:?}");
        assert!(e.message.contains("not ARCTL_*"), "{}", e.message);
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let s = p(MINIMAL).unwrap();
        assert_eq!(s.id.as_str(), "etl-runtime");
        assert_eq!(s.repo, PathBuf::from("/tmp/specs"));
        assert_eq!(s.spec.metric.timeout, MetricTimeout::Factor(2.0));
        assert_eq!(s.spec.metric.repeats, Repeats::Auto);
        assert_eq!(s.spec.metric.min_effect, Percent(0.01));
        assert_eq!(s.spec.limits.measure, MeasureMode::Exclusive);
        assert!(s.spec.policy.simplicity);
        assert_eq!(s.spec.policy.web_search, WebSearch::No);
        assert_eq!(s.spec.proposer.timeout.0, Duration::from_secs(1200));
        assert_eq!(s.spec.metric.extraction(), Extraction::LastNumber);
    }

    #[test]
    fn resolved_spec_round_trips_through_json() {
        let s = p(MINIMAL).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: ResolvedSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(s, back);
    }

    fn err(text: &str) -> SpecError {
        p(text).unwrap_err()
    }

    #[test]
    fn unknown_key_is_located() {
        let e = err(&MINIMAL.replace("direction = \"lower\"", "direction = \"lower\"\nbogus = 1"));
        assert_eq!((e.line, e.column), (5, 1), "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn missing_required_key() {
        let e = err(&MINIMAL.replace("direction = \"lower\"\n", ""));
        assert!(e.message.contains("missing field `direction`"), "{e}");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = err(&format!("{MINIMAL}\n[budget]\nmax_wall = \"2x\"\n"));
        assert_eq!((e.line, e.column), (13, 12), "{e}");
        assert!(e.message.contains("invalid duration \"2x\""), "{e}");

        let e = err(&format!("{MINIMAL}\n[limits]\nmemory = \"4 gigs\"\n"));
        assert_eq!(e.line, 13, "{e}");
        assert!(e.message.contains("invalid size"), "{e}");

        let e = err(&MINIMAL.replace("src/**", "src/[a"));
        assert_eq!((e.line, e.column), (7, 12), "{e}");
        assert!(e.message.contains("invalid glob"), "{e}");
        // The bad element of a longer array, not the array.
        let e = err(&MINIMAL.replace("[\"src/**\"]", "[\n  \"src/**\",\n  'docs/[b',\n]"));
        assert_eq!((e.line, e.column), (9, 3), "{e}");
        assert!(e.message.contains("invalid glob \"docs/[b\""), "{e}");

        let e = err(&format!("id = \"../x\"\n{MINIMAL}"));
        assert_eq!((e.line, e.column), (1, 6), "{e}");
        assert!(e.message.contains("invalid run id"), "{e}");
    }

    #[test]
    fn cross_field_rules() {
        let e = err(&MINIMAL.replace(
            "direction = \"lower\"",
            "direction = \"lower\"\nregex = 'a(\\d+)'\nline = 3",
        ));
        assert!(e.message.contains("both `regex` and `line`"), "{e}");
        assert_eq!(e.line, 6, "{e}");

        let e = err(&MINIMAL.replace(
            "direction = \"lower\"",
            "direction = \"lower\"\nregex = 'mean'",
        ));
        assert!(e.message.contains("no capture group"), "{e}");

        let e = err(&MINIMAL.replace("command = \"claude -p\"", "kind = \"patches\""));
        assert!(e.message.contains("needs `dir`"), "{e}");
        assert_eq!(e.line, 10, "{e}");

        let e = err(&MINIMAL.replace("command = \"claude -p\"", ""));
        assert!(e.message.contains("needs `command`"), "{e}");
    }

    #[test]
    fn params_candidates() {
        let text = MINIMAL.replace(
            "command = \"claude -p\"",
            "kind = \"params\"\n[[proposer.param]]\nfile = \"a.py\"\nregex = 'N = (\\d+)'\nmin = 1\nmax = 9\nstep = 4\n",
        );
        let s = p(&text).unwrap();
        assert_eq!(s.spec.proposer.params[0].candidates(), vec!["1", "5", "9"]);
        let bad = text.replace("step = 4", "step = -1");
        let e = err(&bad);
        assert!(e.message.contains("proposer.param #1"), "{e}");
    }

    #[test]
    fn executor_table() {
        let s = p(MINIMAL).unwrap();
        assert_eq!(s.spec.executor, None);
        let slurm = format!("{MINIMAL}\n[executor]\nkind = \"slurm\"\npartition = \"gpu\"\ngres = \"gpu:1\"\naccount = \"lab\"\nextra_args = [\"--qos=short\"]\nproposer_on_cluster = true\n");
        let s = p(&slurm).unwrap();
        let e = s.spec.executor.clone().unwrap();
        assert_eq!(e.kind, ExecutorKind::Slurm);
        assert_eq!(e.partition.as_deref(), Some("gpu"));
        assert!(e.proposer_on_cluster);
        assert_eq!(
            e.describe(),
            "slurm (partition gpu, gres gpu:1, account lab)"
        );
        let back: ResolvedSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);

        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nqueue = \"x\"\n"
        ));
        assert!(e.message.contains("unknown field `queue`"), "{e}");
        assert_eq!(e.line, 14, "{e}");
        let e = err(&format!("{MINIMAL}\n[executor]\nkind = \"kubernetes\"\n"));
        assert!(e.message.contains("unknown variant"), "{e}");
        let e = err(&format!("{MINIMAL}\n[executor]\npartition = \"gpu\"\n"));
        assert!(e.message.contains("only used by kind = \"slurm\""), "{e}");
        assert_eq!((e.line, e.column), (13, 13), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"--time=5\"]\n"
        ));
        assert!(e.message.contains("--time"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"-Jx\"]\n"
        ));
        assert!(e.message.contains("--job-name"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"qos\"]\n"
        ));
        assert!(e.message.contains("not an option"), "{e}");
        let e = err(
            &format!("{MINIMAL}\n[executor]\nkind = \"slurm\"\n").replace(
                "direction = \"lower\"",
                "direction = \"lower\"\ntime = \"cpu\"",
            ),
        );
        assert!(
            e.message.contains("cannot be measured on a Slurm cluster"),
            "{e}"
        );
        assert_eq!(e.line, 5, "{e}");
        assert!(p(&format!("{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"--exclusive\", \"--constraint=avx\"]\n")).is_ok());
    }

    #[test]
    fn check_host_refuses_instructions_without_a_counter() {
        let text = MINIMAL.replace(
            "direction = \"lower\"",
            "direction = \"lower\"\ntime = \"instructions\"",
        );
        // Parsing alone does not probe the host.
        let s = p(&text).unwrap();
        let none = HostFacts {
            instructions: Err("no counter here".into()),
            ..HostFacts::everything()
        };
        let e = check_host(&s, &text, &none).unwrap_err();
        assert_eq!(
            e.message,
            "metric.time = \"instructions\" is not available on this machine: no counter here; use \"cpu\" or \"wall\""
        );
        assert_eq!((e.line, e.column), (5, 8), "{e}");
        assert_eq!(e.file, s.spec_file);
        assert_eq!(e.source_line.as_deref(), Some("time = \"instructions\""));
        let counter = HostFacts::everything();
        assert!(check_host(&s, &text, &counter).is_ok());
        // Other ways to read the metric never need the counter.
        let cpu = text.replace("\"instructions\"", "\"cpu\"");
        assert!(check_host(&p(&cpu).unwrap(), &cpu, &none).is_ok());
        assert!(check_host(&p(MINIMAL).unwrap(), MINIMAL, &none).is_ok());
    }

    #[test]
    fn sandbox_table() {
        let s = p(MINIMAL).unwrap();
        assert_eq!(s.spec.sandbox, crate::spec::SandboxSpec::default());
        assert!(s.spec.sandbox.network);
        let text = format!("{MINIMAL}\n[sandbox]\nmode = \"detect\"\nwritable = [\"~/.cache/uv\"]\nnetwork = false\n");
        let s = p(&text).unwrap();
        assert_eq!(s.spec.sandbox.mode, Some(SandboxMode::Detect));
        assert_eq!(s.spec.sandbox.writable, vec!["~/.cache/uv".to_string()]);
        assert!(!s.spec.sandbox.network);
        let e = err(&format!("{MINIMAL}\n[sandbox]\nmode = \"strict\"\n"));
        assert!(e.message.contains("unknown variant"), "{e}");
        let e = err(&format!("{MINIMAL}\n[sandbox]\nwritable = [\"/\"]\n"));
        assert!(e.message.contains("whole machine"), "{e}");
        // The host: enforce needs Landlock, network = false needs namespaces.
        let bare = HostFacts {
            landlock: Err("kernel 5.4".into()),
            network_namespaces: Err("user namespaces disabled".into()),
            ..HostFacts::everything()
        };
        let enforce = format!("{MINIMAL}\n[sandbox]\nmode = \"enforce\"\n");
        let e = check_host(&p(&enforce).unwrap(), &enforce, &bare).unwrap_err();
        assert!(
            e.message.contains("needs Landlock") && e.message.contains("kernel 5.4"),
            "{e}"
        );
        assert!(check_host(&p(&enforce).unwrap(), &enforce, &HostFacts::everything()).is_ok());
        let e = check_host(&p(&text).unwrap(), &text, &bare).unwrap_err();
        assert!(e.message.contains("network namespaces"), "{e}");
        assert!(check_host(&p(MINIMAL).unwrap(), MINIMAL, &bare).is_ok());
    }
}
