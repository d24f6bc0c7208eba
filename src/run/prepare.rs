//! Prepared worktrees (`[setup]`): a new worktree (the run's, its best tree, a merge's) gets
//! the untracked or ignored files the spec names copied from the main checkout, then the
//! setup command run once in it. What setup makes is the environment, not a change: what it
//! leaves untracked gets an exclude line (so the scope check, the agent's `git add -A` and
//! the reverts between experiments all leave it alone); a setup that edits tracked files
//! fails, since that edit would be counted as the agent's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use crate::exec::{Cancel, CommandSpec, Executor, Exit, Limits};
use crate::run::guard_rails::{self, Role};
use crate::run::record::RunRecord;
use crate::run::runner::Runner;
use crate::spec::Glob;

/// How one tree is prepared: the run's setup command through `executor` (inside the run's
/// guard rails), its output in `stdout`/`stderr`.
pub struct Preparation<'a> {
    pub rec: &'a RunRecord,
    pub executor: &'a dyn Executor,
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub tag: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// A prepared tree: the exclude lines for what setup left untracked, and what it did.
#[derive(Debug, Default)]
pub struct Prepared {
    pub excludes: Vec<String>,
    pub summary: String,
}

/// Does the run's spec ask for any preparation of a new tree?
pub fn wanted(rec: &RunRecord) -> bool {
    let s = &rec.spec.spec.setup;
    !s.copy.is_empty() || s.command.is_some()
}

impl Preparation<'_> {
    /// Copy, run the command, check what it left. None: interrupted.
    pub fn prepare(&self, tree: &Path, cancel: &Cancel) -> Result<Option<Prepared>> {
        let setup = &self.rec.spec.spec.setup;
        let mut done = Vec::new();
        if !setup.copy.is_empty() {
            let n = copy_untracked(&self.rec.repo, tree, &setup.copy)?;
            done.push(format!(
                "copied {n} file{} from {}",
                if n == 1 { "" } else { "s" },
                self.rec.repo.display()
            ));
        }
        if let Some(command) = &setup.command {
            let spec = CommandSpec {
                command: command.clone(),
                cwd: tree.to_path_buf(),
                env: self.env.clone(),
                stdin: None,
                stdout: self.stdout.clone(),
                stderr: self.stderr.clone(),
                timeout: Some(setup.timeout.0),
                limits: self.limits.clone(),
                tag: self.tag.clone(),
                count_instructions: false,
                exclusive: false,
            };
            let outcome = self
                .executor
                .run(&spec, cancel)
                .with_context(|| format!("running the setup command {command:?}"))?;
            match &outcome.exit {
                Exit::Cancelled => return Ok(None),
                e if !e.success() => {
                    let why = match e {
                        Exit::TimedOut => format!(
                            "timed out after {}",
                            crate::spec::format_duration(setup.timeout.0)
                        ),
                        e => e.describe(),
                    };
                    return Err(anyhow!(
                        "the setup command {command:?} failed in {} ({why}); its output is in {}: {}",
                        tree.display(),
                        self.stderr.display(),
                        crate::store::tail_lines(&self.stderr, 5)
                    ));
                }
                _ => done.push(format!(
                    "ran {command:?} in {:.1}s",
                    outcome.wall_ms as f64 / 1000.0
                )),
            }
        }
        let excludes = environment_lines(tree)?;
        Ok(Some(Prepared {
            excludes,
            summary: done.join("; "),
        }))
    }
}

/// Copy the files of the main checkout `main` matching `globs` that `tree` does not track
/// into `tree` (modes and symlinks kept, `.git` skipped). Returns how many were copied.
pub fn copy_untracked(main: &Path, tree: &Path, globs: &[Glob]) -> Result<usize> {
    let repo = git2::Repository::open(tree)
        .with_context(|| format!("opening worktree {}", tree.display()))?;
    let tracked: HashSet<String> = crate::git::tracked_files(&repo).into_iter().collect();
    let mut copied = 0;
    for glob in globs {
        let matcher = glob.matcher();
        let mut found = Vec::new();
        walk(main, &literal_prefix(&glob.0), &mut found);
        for rel in found {
            if !matcher.is_match(&rel) || tracked.contains(&rel) {
                continue;
            }
            copy_one(&main.join(&rel), &tree.join(&rel))
                .with_context(|| format!("[setup] copy {:?}: copying {rel}", glob.0))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// The folders of a glob before its first wildcard: where its matches can be.
fn literal_prefix(glob: &str) -> String {
    let parts: Vec<&str> = glob.split('/').collect();
    let literal: Vec<&str> = parts
        .iter()
        .take_while(|p| !p.contains(['*', '?', '[', '{', '\\']))
        .copied()
        .collect();
    literal.join("/")
}

/// Every file and symlink under `root/rel` (or `rel` itself), as repo paths; `.git` skipped,
/// symlinks not followed.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let full = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(md) = std::fs::symlink_metadata(&full) else {
        return;
    };
    if !md.is_dir() {
        if !rel.is_empty() {
            out.push(rel.to_string());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(&full) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name == ".git" {
            continue;
        }
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        walk(root, &child, out);
    }
}

fn copy_one(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let md = std::fs::symlink_metadata(from)?;
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        let _ = std::fs::remove_file(to);
        return std::os::unix::fs::symlink(target, to);
    }
    // `fs::copy` keeps the permission bits (and uses copy_file_range: cheap on big data).
    std::fs::copy(from, to).map(|_| ())
}

/// What a prepared tree holds that git sees as untracked: an anchored exclude line for each
/// (a folder as one line). Fails when tracked files were changed.
fn environment_lines(tree: &Path) -> Result<Vec<String>> {
    let repo = git2::Repository::open(tree)
        .with_context(|| format!("opening worktree {}", tree.display()))?;
    let mut so = git2::StatusOptions::new();
    so.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false);
    let statuses = repo.statuses(Some(&mut so))?;
    let mut lines = Vec::new();
    let mut edited = Vec::new();
    for s in statuses.iter() {
        let Some(path) = s.path() else { continue };
        if s.status() == git2::Status::WT_NEW {
            lines.push(exclude_line(path));
        } else {
            edited.push(path.to_string());
        }
    }
    if !edited.is_empty() {
        edited.truncate(8);
        return Err(anyhow!(
            "setup changed tracked files in {}: {}; the agent's changes would include them. Make setup leave tracked files alone (e.g. `uv sync --locked`, `npm ci`), or commit what it changes on the base first",
            tree.display(),
            edited.join(", ")
        ));
    }
    Ok(lines)
}

/// `path` as an exclude line matching exactly it, from the repo root (wildcards and a
/// trailing space escaped).
fn exclude_line(path: &str) -> String {
    let mut line = String::from("/");
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            line.push('\\');
        }
        line.push(c);
    }
    if line.ends_with(' ') {
        line.insert(line.len() - 1, '\\');
    }
    line
}

/// The untracked and ignored top-level paths of the main checkout `main` that `tree` lacks:
/// what a failing baseline may need (a `.env`, a data folder, a virtualenv).
pub fn missing_from(main: &Path, tree: &Path) -> Vec<String> {
    let Ok(repo) = git2::Repository::open(main) else {
        return Vec::new();
    };
    let mut so = git2::StatusOptions::new();
    so.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(true)
        .recurse_ignored_dirs(false);
    let Ok(statuses) = repo.statuses(Some(&mut so)) else {
        return Vec::new();
    };
    statuses
        .iter()
        .filter(|s| {
            s.status()
                .intersects(git2::Status::WT_NEW | git2::Status::IGNORED)
        })
        .filter_map(|s| s.path().map(str::to_string))
        .filter(|p| !tree.join(p.trim_end_matches('/')).exists())
        .collect()
}

impl Runner {
    /// Prepare a new tree of the run (`label`: "worktree", "best-tree") as its spec says,
    /// and record the exclude lines of what setup made. Ok(false): interrupted.
    pub(super) fn prepare_tree(&self, tree: &Path, label: &str, cancel: &Cancel) -> Result<bool> {
        if !wanted(&self.rec) {
            return Ok(true);
        }
        self.h.set_detail(format!("setup of the {label}"));
        let executor = guard_rails::wrap(self.g.executor(&self.rec), &self.rails, Role::Setup);
        let suffix = if label == "worktree" {
            String::new()
        } else {
            format!("-{label}")
        };
        let p = Preparation {
            rec: &self.rec,
            executor: &*executor,
            env: self.base_env(0),
            limits: self.limits(),
            tag: self.tag(0, &format!("setup{suffix}")),
            stdout: self.h.paths.output(&format!("0/setup{suffix}.out")),
            stderr: self.h.paths.output(&format!("0/setup{suffix}.err")),
        };
        let Some(done) = p.prepare(tree, cancel)? else {
            return Ok(false);
        };
        let tampered = self.rails.take_tampered();
        if !tampered.is_empty() {
            return Err(anyhow!(
                "setup of the {label}: {}; setup may change only its own tree",
                tampered.join("; ")
            ));
        }
        record_excludes(&self.h, &done.excludes)?;
        self.log(&format!(
            "setup of the {label} {}: {}{}",
            tree.display(),
            done.summary,
            if done.excludes.is_empty() {
                String::new()
            } else {
                format!("; untracked, now excluded: {}", done.excludes.join(" "))
            }
        ));
        Ok(true)
    }
}

/// Add exclude lines for what setup made, and record them in the run (for cleanup).
pub fn record_excludes(h: &crate::run::RunHandle, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let rec = h.record();
    crate::git::exclude::add(&rec.common_dir, lines)?;
    h.update(|r| {
        for l in lines {
            if !r.setup_excludes.contains(l) {
                r.setup_excludes.push(l.clone());
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        assert_eq!(literal_prefix(".env"), ".env");
        assert_eq!(literal_prefix("data/**"), "data");
        assert_eq!(literal_prefix("a/b/*.csv"), "a/b");
        assert_eq!(literal_prefix("**/*.env"), "");
    }

    #[test]
    fn exclude_lines_match_only_the_path() {
        assert_eq!(exclude_line(".env"), "/.env");
        assert_eq!(exclude_line(".venv/"), "/.venv/");
        assert_eq!(exclude_line("a*b[1]"), "/a\\*b\\[1]");
        assert_eq!(exclude_line("x "), "/x\\ ");
    }

    #[test]
    fn copies_untracked_matches_and_keeps_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main");
        std::fs::create_dir_all(main.join("data/sub")).unwrap();
        let repo = git2::Repository::init(&main).unwrap();
        std::fs::write(main.join("tracked.txt"), "t").unwrap();
        let mut idx = repo.index().unwrap();
        idx.add_path(Path::new("tracked.txt")).unwrap();
        idx.write().unwrap();
        std::fs::write(main.join(".env"), "KEY=1").unwrap();
        std::fs::write(main.join("data/sub/a.csv"), "1,2").unwrap();
        std::os::unix::fs::symlink("sub/a.csv", main.join("data/link")).unwrap();
        std::fs::create_dir_all(main.join(".git/x")).unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        let t = git2::Repository::init(&tree).unwrap();
        std::fs::write(tree.join("tracked.txt"), "mine").unwrap();
        let mut idx = t.index().unwrap();
        idx.add_path(Path::new("tracked.txt")).unwrap();
        idx.write().unwrap();
        let oid = idx.write_tree().unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let tree_obj = t.find_tree(oid).unwrap();
        t.commit(Some("HEAD"), &sig, &sig, "base", &tree_obj, &[])
            .unwrap();
        let globs: Vec<Glob> = [".env", "data/**", "tracked.txt", "missing/**"]
            .iter()
            .map(|g| Glob::parse(g).unwrap())
            .collect();
        assert_eq!(copy_untracked(&main, &tree, &globs).unwrap(), 3);
        assert_eq!(std::fs::read_to_string(tree.join(".env")).unwrap(), "KEY=1");
        assert_eq!(
            std::fs::read_link(tree.join("data/link")).unwrap(),
            Path::new("sub/a.csv")
        );
        // A tracked file is the tree's own, never overwritten.
        assert_eq!(
            std::fs::read_to_string(tree.join("tracked.txt")).unwrap(),
            "mine"
        );
        let lines = environment_lines(&tree).unwrap();
        assert_eq!(lines, vec!["/.env".to_string(), "/data/".to_string()]);
    }
}
