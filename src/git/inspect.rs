//! What a proposer may have hidden from the scope check or smuggled past it: files hidden
//! by ignore rules it wrote, symlinks that lead out of the worktree, nested repositories and
//! submodules. Each check looks at the work tree as the child left it.

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;
use git2::StatusOptions;

use super::{Change, ChangeKind, WorkTree};

impl WorkTree {
    /// Ignored files written since `since` when the ignore rules themselves may have been
    /// changed by the child (a `.gitignore` among the changes, or an ignored `.gitignore`,
    /// which only a child can have made): such files are changes like any other. With the
    /// rules untouched, ignored files (build outputs) are not the scope check's business.
    /// `own` are arctl's files in the worktree (the run's TSV and log), never the child's.
    pub fn hidden_by_ignores(
        &self,
        changes: &[Change],
        since: SystemTime,
        own: &[String],
    ) -> Result<Vec<Change>> {
        let is_rule = |p: &str| p == ".gitignore" || p.ends_with("/.gitignore");
        // The scope check's stat walk, made since, listed every file not tracked as it is
        // outside ignored folders (git reads no `.gitignore` inside one): without a
        // `.gitignore` among them there is no ignored one, and no full status is needed.
        let walked_clean = matches!(self.rules_walk.get(), Some((t, false)) if t >= since);
        if walked_clean && !changes.iter().any(|c| is_rule(&c.path)) {
            return Ok(Vec::new());
        }
        let mut so = StatusOptions::new();
        so.include_ignored(true)
            .recurse_ignored_dirs(false)
            .include_untracked(true)
            .recurse_untracked_dirs(true);
        let statuses = self.repo.statuses(Some(&mut so))?;
        let ignored: Vec<String> = statuses
            .iter()
            .filter(|s| s.status().contains(git2::Status::IGNORED))
            .filter_map(|s| s.path().map(str::to_string))
            .filter(|p| !own.contains(p))
            .collect();
        let rules_touched = changes.iter().any(|c| is_rule(&c.path))
            || ignored.iter().any(|p| is_rule(p.trim_end_matches('/')));
        if !rules_touched {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for p in ignored {
            self.recent_files(&self.path.join(p.trim_end_matches('/')), since, &mut out);
        }
        Ok(out)
    }

    fn recent_files(&self, full: &Path, since: SystemTime, out: &mut Vec<Change>) {
        let Ok(md) = std::fs::symlink_metadata(full) else {
            return;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(full) {
                for e in rd.flatten() {
                    self.recent_files(&e.path(), since, out);
                }
            }
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let changed = md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128;
        let since_ns = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        if changed >= since_ns {
            if let Ok(rel) = full.strip_prefix(&self.path) {
                out.push(Change {
                    path: rel.to_string_lossy().to_string(),
                    kind: ChangeKind::Added,
                });
            }
        }
    }

    /// Added or modified symlinks whose target lies outside the worktree.
    pub fn escaping_symlinks(&self, changes: &[Change]) -> Vec<String> {
        let root = self
            .path
            .canonicalize()
            .unwrap_or_else(|_| self.path.clone());
        changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Deleted)
            .filter(|c| {
                let full = self.path.join(&c.path);
                let Ok(target) = std::fs::read_link(&full) else {
                    return false;
                };
                let resolved = std::fs::canonicalize(&full).unwrap_or_else(|_| {
                    // Dangling: where it would point.
                    let dir = full.parent().unwrap_or(&self.path);
                    lexical(
                        &dir.canonicalize()
                            .unwrap_or_else(|_| dir.to_path_buf())
                            .join(&target),
                    )
                });
                !resolved.starts_with(&root)
            })
            .map(|c| c.path.clone())
            .collect()
    }

    /// Changes that are (or are inside) a nested git repository or a submodule.
    pub fn nested_repos(&self, changes: &[Change]) -> Vec<String> {
        let gitlinks: Vec<Vec<u8>> = self
            .repo
            .index()
            .map(|i| {
                i.iter()
                    .filter(|e| e.mode == 0o160000)
                    .map(|e| e.path)
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<String> = changes
            .iter()
            .filter(|c| {
                let full = self.path.join(c.path.trim_end_matches('/'));
                c.path.ends_with('/')
                    || full.join(".git").exists()
                    || c.path == ".gitmodules"
                    || gitlinks.iter().any(|g| g == c.path.as_bytes())
            })
            .map(|c| c.path.clone())
            .collect();
        out.dedup();
        out
    }

    /// Remove what the child left that a reset does not: nested repositories (untracked
    /// folders with a `.git`) and the files it hid under ignore rules.
    pub fn remove_leftovers(&self, paths: &[String]) {
        for p in paths {
            let full = self.path.join(p.trim_end_matches('/'));
            if !full.starts_with(&self.path) || full == self.path {
                continue;
            }
            match std::fs::symlink_metadata(&full) {
                Ok(md) if md.is_dir() => {
                    let _ = std::fs::remove_dir_all(&full);
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&full);
                }
                Err(_) => {}
            }
        }
    }
}

/// `p` with `.` and `..` resolved without touching the filesystem.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
