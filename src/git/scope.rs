//! Scope matching (which paths a run may edit) and overlap between runs' scopes. Pure.

use globset::GlobMatcher;

use crate::spec::{build_glob, Glob, ScopeSpec};

/// Compiled include/exclude globs of a run.
pub struct Scope {
    include: Vec<GlobMatcher>,
    exclude: Vec<GlobMatcher>,
}

impl Scope {
    pub fn new(spec: &ScopeSpec) -> Scope {
        Scope {
            include: spec.include.iter().map(Glob::matcher).collect(),
            exclude: spec.exclude.iter().map(Glob::matcher).collect(),
        }
    }

    /// May the run edit `path` (repo-relative, '/'-separated)?
    pub fn allows(&self, path: &str) -> bool {
        self.include.iter().any(|g| g.is_match(path))
            && !self.exclude.iter().any(|g| g.is_match(path))
    }

    /// The paths of `paths` the run may not edit.
    pub fn violations<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        paths
            .into_iter()
            .filter(|p| !self.allows(p))
            .map(str::to_string)
            .collect()
    }
}

/// What the scope check would see that the user most likely did not mean: an include glob
/// that matches no tracked file (every real edit there would still be allowed, but a typo
/// like `srcc/**` makes every edit the agent makes elsewhere a reject), and a metric or guard
/// command that runs a file inside the scope (the agent could edit its own judge).
/// `commands` are (what, command line) pairs such as ("metric.command", "./bench.sh").
pub fn warnings(
    spec: &ScopeSpec,
    tracked: &[String],
    commands: &[(String, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    for g in &spec.include {
        let m = g.matcher();
        if !tracked.iter().any(|p| m.is_match(p)) {
            out.push(format!(
                "scope.include {:?} matches no tracked file: the agent's edits elsewhere are rejected (a typo?)",
                g.0
            ));
        }
    }
    let scope = Scope::new(spec);
    for (what, command) in commands {
        if let Some(file) = judge_in_scope(command, tracked, &scope) {
            out.push(format!(
                "{what} runs {file}, which is inside the scope: the agent could edit its own judge; exclude it with scope.exclude"
            ));
        }
    }
    out
}

/// The first file (or folder of files) inside the scope that a command runs: its program
/// when that is a tracked file (`./bench.sh`), or an argument that names a script
/// (`python bench.py`) or a folder of tracked files (`pytest tests/`). Data a command only
/// reads (`cat value.txt`) is not a judge.
fn judge_in_scope(command: &str, tracked: &[String], scope: &Scope) -> Option<String> {
    const SCRIPTS: [&str; 8] = [".py", ".sh", ".js", ".ts", ".rb", ".pl", ".r", ".jl"];
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || ";&|()<>'\"".contains(c))
        .filter(|w| !w.is_empty() && !w.starts_with('-'))
        .collect();
    for (i, raw) in words.iter().enumerate() {
        let w = raw.trim_start_matches("./");
        let scriptish = i == 0 || SCRIPTS.iter().any(|e| w.to_lowercase().ends_with(e));
        if scriptish && tracked.iter().any(|t| t == w) && scope.allows(w) {
            return Some(w.to_string());
        }
        let folder = format!("{}/", w.trim_end_matches('/'));
        if i > 0
            && raw.ends_with('/')
            && tracked
                .iter()
                .any(|t| t.starts_with(&folder) && scope.allows(t))
        {
            return Some(folder);
        }
    }
    None
}

/// Why two scopes overlap: example paths both would edit (tracked files first, then a
/// path pattern both globs admit).
pub fn overlap(a: &ScopeSpec, b: &ScopeSpec, tracked: &[String]) -> Option<Vec<String>> {
    let (sa, sb) = (Scope::new(a), Scope::new(b));
    let files: Vec<String> = tracked
        .iter()
        .filter(|p| sa.allows(p) && sb.allows(p))
        .take(5)
        .cloned()
        .collect();
    if !files.is_empty() {
        return Some(files);
    }
    for ga in &a.include {
        for gb in &b.include {
            if let Some(example) = globs_may_overlap(&ga.0, &gb.0) {
                // A literal example path excluded by either side is no overlap.
                let literal = !has_meta(&example) && !example.contains('…');
                if literal && !(sa.allows(&example) && sb.allows(&example)) {
                    continue;
                }
                return Some(vec![example]);
            }
        }
    }
    None
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Could some path match both globs? Conservative: only says "no" when a component
/// rules it out. Returns an example pattern both admit.
pub fn globs_may_overlap(a: &str, b: &str) -> Option<String> {
    let ca: Vec<&str> = a.split('/').collect();
    let cb: Vec<&str> = b.split('/').collect();
    let mut example = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        match (ca.get(i), cb.get(j)) {
            (None, None) => return Some(example.join("/")),
            (Some(&"**"), _) | (_, Some(&"**")) => {
                // Any depth from here: the rest of the other glob can follow.
                let rest_a = ca[i..].join("/");
                let rest_b = cb[j..].join("/");
                let tail = if ca.get(i) == Some(&"**") {
                    rest_b
                } else {
                    rest_a
                };
                if !tail.is_empty() && tail != "**" {
                    example.push(tail);
                } else {
                    example.push("…".into());
                }
                return Some(example.join("/"));
            }
            (Some(x), Some(y)) => {
                let ok = match (has_meta(x), has_meta(y)) {
                    (false, false) => x == y,
                    (true, false) => component_matches(x, y),
                    (false, true) => component_matches(y, x),
                    (true, true) => wildcards_may_meet(x, y),
                };
                if !ok {
                    return None;
                }
                example.push(if has_meta(x) {
                    y.to_string()
                } else {
                    x.to_string()
                });
                i += 1;
                j += 1;
            }
            // Different depths and no `**` to absorb it.
            _ => return None,
        }
    }
}

fn component_matches(glob: &str, literal: &str) -> bool {
    build_glob(glob)
        .map(|g| g.compile_matcher().is_match(literal))
        .unwrap_or(true)
}

/// Two wildcard components: disjoint only when their literal prefixes or suffixes clash
/// (e.g. `*.py` vs `*.rs`, `test_*` vs `bench_*`).
fn wildcards_may_meet(x: &str, y: &str) -> bool {
    if x.contains(['[', '{']) || y.contains(['[', '{']) {
        return true;
    }
    let prefix = |s: &str| s.split(['*', '?']).next().unwrap_or("").to_string();
    let suffix = |s: &str| s.rsplit(['*', '?']).next().unwrap_or("").to_string();
    let (pa, pb) = (prefix(x), prefix(y));
    let (sa, sb) = (suffix(x), suffix(y));
    let pre_ok = pa.starts_with(&pb) || pb.starts_with(&pa);
    let suf_ok = sa.ends_with(&sb) || sb.ends_with(&sa);
    pre_ok && suf_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_name_empty_globs_and_judges_in_scope() {
        let spec = ScopeSpec {
            include: vec![
                Glob::parse("srcc/**").unwrap(),
                Glob::parse("src/**").unwrap(),
            ],
            exclude: vec![],
        };
        let tracked: Vec<String> = ["src/a.py", "src/bench.py", "src/data.txt"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cmd = |what: &str, c: &str| (what.to_string(), c.to_string());
        let cmds = vec![
            cmd("metric.command", "python src/bench.py --n 3"),
            cmd("guard tests", "pytest -q tests/"),
            cmd("guard data", "cat src/data.txt | wc -l"),
            cmd("guard unit", "pytest -q src/"),
        ];
        let w = warnings(&spec, &tracked, &cmds);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("\"srcc/**\" matches no tracked file"),
            "{w:?}"
        );
        assert!(w[1].contains("metric.command runs src/bench.py"), "{w:?}");
        assert!(w[2].contains("guard unit runs src/"), "{w:?}");
    }

    fn scope(include: &[&str], exclude: &[&str]) -> ScopeSpec {
        ScopeSpec {
            include: include.iter().map(|s| Glob::parse(s).unwrap()).collect(),
            exclude: exclude.iter().map(|s| Glob::parse(s).unwrap()).collect(),
        }
    }

    #[test]
    fn allows_and_violations() {
        let s = Scope::new(&scope(&["src/etl/**"], &["src/etl/fixtures/**"]));
        assert!(s.allows("src/etl/a.py"));
        assert!(s.allows("src/etl/deep/b.py"));
        assert!(!s.allows("src/etl/fixtures/x.csv"));
        assert!(!s.allows("src/api/a.py"));
        assert_eq!(
            s.violations(["src/etl/a.py", "README.md"]),
            vec!["README.md"]
        );
        let top = Scope::new(&scope(&["*.py"], &[]));
        assert!(top.allows("a.py") && !top.allows("src/a.py"));
    }

    #[test]
    fn overlap_by_globs() {
        assert!(globs_may_overlap("src/**", "src/new_dir/*.rs").is_some());
        assert!(globs_may_overlap("src/etl/**", "src/api/**").is_none());
        assert!(globs_may_overlap("*.py", "src/**").is_none());
        assert!(globs_may_overlap("*.py", "*.rs").is_none());
        assert!(globs_may_overlap("*.py", "main.py").is_some());
        assert!(globs_may_overlap("src/*/x.rs", "src/a/*").is_some());
        assert!(globs_may_overlap("**", "anything/at/all").is_some());
        assert!(globs_may_overlap("a/b.rs", "a/b.rs/c").is_none());
    }

    #[test]
    fn overlap_names_tracked_files_first() {
        let tracked = vec![
            "src/a.rs".to_string(),
            "src/b/c.rs".to_string(),
            "README".to_string(),
        ];
        let ex = overlap(
            &scope(&["src/**"], &[]),
            &scope(&["src/b/**"], &[]),
            &tracked,
        )
        .unwrap();
        assert_eq!(ex, vec!["src/b/c.rs"]);
        // Exclusions on either side count.
        assert!(overlap(
            &scope(&["src/*.rs"], &["src/a.rs"]),
            &scope(&["src/a.rs"], &[]),
            &tracked
        )
        .is_none());
        assert!(overlap(&scope(&["lib/**"], &[]), &scope(&["src/**"], &[]), &tracked).is_none());
    }
}
