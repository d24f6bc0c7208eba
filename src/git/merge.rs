//! Git operations of `arctl merge` and `arctl cleanup`: three-way merges in memory, merge and
//! squash commits, moving a branch that may be checked out somewhere (safely), and the
//! history of a run's kept commits.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::{BranchType, Oid, Repository, Signature, StatusOptions};

/// Where the three-way merge of a run's branch onto a base came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeMerge {
    /// The merged tree (written to the object database, referenced by nothing yet).
    Clean(Oid),
    /// Paths that conflict.
    Conflict(Vec<String>),
}

fn signature(repo: &Repository) -> Signature<'static> {
    super::signature(repo)
}

/// The commit a local branch points at.
pub fn branch_tip(repo: &Repository, branch: &str) -> Option<Oid> {
    repo.find_branch(branch, BranchType::Local)
        .ok()
        .and_then(|b| b.get().target())
}

/// True when `ancestor` is `descendant` or one of its ancestors.
pub fn is_ancestor(repo: &Repository, ancestor: Oid, descendant: Oid) -> bool {
    ancestor == descendant
        || repo
            .graph_descendant_of(descendant, ancestor)
            .unwrap_or(false)
}

/// True when the object database has this commit.
pub fn has_commit(repo: &Repository, oid: Oid) -> bool {
    repo.find_commit(oid).is_ok()
}

/// Merge `theirs` (a commit) into `ours` (a tree standing for the base after the merges
/// before it), with `merge_base` as the common ancestor. Nothing but objects is written.
pub fn merge_onto(repo: &Repository, merge_base: Oid, ours: Oid, theirs: Oid) -> Result<TreeMerge> {
    let ancestor = repo.find_commit(merge_base)?.tree()?;
    let ours = repo.find_tree(ours)?;
    let theirs = repo.find_commit(theirs)?.tree()?;
    let mut index = repo
        .merge_trees(&ancestor, &ours, &theirs, None)
        .context("merging trees")?;
    if index.has_conflicts() {
        let mut paths: Vec<String> = index
            .conflicts()?
            .filter_map(|c| c.ok())
            .filter_map(|c| {
                c.our
                    .or(c.their)
                    .or(c.ancestor)
                    .map(|e| String::from_utf8_lossy(&e.path).to_string())
            })
            .collect();
        paths.sort();
        paths.dedup();
        return Ok(TreeMerge::Conflict(paths));
    }
    Ok(TreeMerge::Clean(index.write_tree_to(repo)?))
}

/// The best common ancestor of two commits.
pub fn merge_base(repo: &Repository, a: Oid, b: Oid) -> Result<Oid> {
    repo.merge_base(a, b).map_err(|e| {
        anyhow!(
            "{} and {} have no common history: {}",
            super::short(a),
            super::short(b),
            e.message()
        )
    })
}

/// The tree of a commit.
pub fn tree_of(repo: &Repository, commit: Oid) -> Result<Oid> {
    Ok(repo.find_commit(commit)?.tree_id())
}

/// Write a commit that no ref points at yet.
pub fn commit(repo: &Repository, tree: Oid, parents: &[Oid], message: &str) -> Result<Oid> {
    let tree = repo.find_tree(tree)?;
    let parents: Vec<git2::Commit> = parents
        .iter()
        .map(|p| repo.find_commit(*p))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    let sig = signature(repo);
    Ok(repo.commit(None, &sig, &sig, message, &tree, &refs)?)
}

/// Lines added and removed between two trees.
pub fn tree_diff_lines(repo: &Repository, from: Oid, to: Oid) -> Result<(usize, usize)> {
    let a = repo.find_tree(from)?;
    let b = repo.find_tree(to)?;
    let s = repo.diff_tree_to_tree(Some(&a), Some(&b), None)?.stats()?;
    Ok((s.insertions(), s.deletions()))
}

/// Every work tree of the repository (the main one and the linked ones) whose HEAD is the
/// branch `branch`.
pub fn checkouts_of(repo: &Repository, branch: &str) -> Vec<PathBuf> {
    let refname = format!("refs/heads/{branch}");
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut consider = |path: &Path| {
        if let Ok(r) = Repository::open(path) {
            let on_branch = r
                .find_reference("HEAD")
                .ok()
                .and_then(|h| h.symbolic_target().map(|t| t == refname))
                .unwrap_or(false);
            if on_branch && !r.is_bare() {
                let p = r
                    .workdir()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| path.to_path_buf());
                let p = p.canonicalize().unwrap_or(p);
                if !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
    };
    // The main work tree: the common dir's parent for a normal `.git` layout.
    let common = repo.commondir();
    if let Ok(main) = Repository::open(common) {
        if let Some(wd) = main.workdir() {
            consider(wd);
        }
    }
    if let Ok(names) = repo.worktrees() {
        for name in names.iter().flatten() {
            if let Ok(wt) = repo.find_worktree(name) {
                if wt.path().exists() {
                    consider(wt.path());
                }
            }
        }
    }
    paths
}

/// Tracked files of a work tree that differ from its HEAD (staged or not). Untracked files
/// don't count: a merge never touches them unless a merged file would overwrite one, which
/// the checkout then refuses.
pub fn tracked_changes(path: &Path) -> Result<Vec<String>> {
    let repo = Repository::open(path)
        .map_err(|e| anyhow!("opening {}: {}", path.display(), e.message()))?;
    let mut so = StatusOptions::new();
    so.include_untracked(false)
        .include_ignored(false)
        .include_unmodified(false);
    let statuses = repo.statuses(Some(&mut so))?;
    let mut out: Vec<String> = statuses
        .iter()
        .filter(|s| !s.status().is_empty() && s.status() != git2::Status::CURRENT)
        .filter_map(|s| s.path().map(str::to_string))
        .collect();
    out.sort();
    Ok(out)
}

fn move_branch_inner(
    repo: &Repository,
    branch: &str,
    old: Oid,
    new: Oid,
    message: &str,
) -> Result<()> {
    let refname = format!("refs/heads/{branch}");
    let checkouts = checkouts_of(repo, branch);
    for wt in &checkouts {
        let dirty = tracked_changes(wt)?;
        if !dirty.is_empty() {
            bail!(
                "{branch} is checked out in {} with uncommitted changes ({}): commit or stash them first",
                wt.display(),
                shown(&dirty)
            );
        }
    }
    // Files first, while HEAD (a symbolic ref to the branch) still names `old`: the safe
    // checkout compares the work tree with HEAD and writes nothing when a file is in the way.
    let mut done: Vec<&PathBuf> = Vec::new();
    let undo = |done: &[&PathBuf]| {
        for d in done {
            let _ = checkout_commit(d, old, true);
        }
    };
    for wt in &checkouts {
        if let Err(e) = checkout_commit(wt, new, false) {
            undo(&done);
            return Err(e.context(format!(
                "updating the checkout of {branch} in {}",
                wt.display()
            )));
        }
        done.push(wt);
    }
    if let Err(e) = repo.reference_matching(&refname, new, true, old, message) {
        undo(&done);
        bail!(
            "{branch} moved while arctl was merging (expected it at {}): {}",
            super::short(old),
            e.message()
        );
    }
    Ok(())
}

/// Move branch `branch` from `old` to `new` (compare-and-swap: it fails when the branch moved
/// meanwhile) and bring every work tree that has it checked out to `new` (files and index),
/// refusing to overwrite anything: a work tree must be clean in its tracked files, and an
/// untracked file in the way stops the move. On failure everything is put back.
pub fn move_branch(
    repo: &Repository,
    branch: &str,
    old: Oid,
    new: Oid,
    message: &str,
) -> Result<()> {
    // arctl's own change of the user's branch and checkout: not a child's (see `snapshot`).
    let refname = format!("refs/heads/{branch}");
    let rels = [refname.as_str(), "packed-refs", "index", "HEAD"];
    super::snapshot::own_write(repo.commondir(), &rels, || {
        move_branch_inner(repo, branch, old, new, message)
    })
}

/// Check out the tree of commit `to` in a work tree (files and index), without moving HEAD.
/// Safe mode refuses, before writing anything, when a tracked file differs from HEAD or an
/// untracked file is in the way; `force` is only for putting back what a safe one wrote.
fn checkout_commit(path: &Path, to: Oid, force: bool) -> Result<()> {
    let repo = Repository::open(path)?;
    let new = repo.find_commit(to)?;
    let mut co = git2::build::CheckoutBuilder::new();
    if force {
        co.force();
    } else {
        co.safe().recreate_missing(true);
    }
    repo.checkout_tree(new.as_object(), Some(&mut co))
        .map_err(|e| anyhow!("{}", e.message()))?;
    Ok(())
}

/// `git log --oneline from..to` (newest first).
pub fn log_oneline(repo: &Repository, from: Oid, to: Oid) -> Result<Vec<String>> {
    let mut walk = repo.revwalk()?;
    walk.push(to)?;
    if repo.find_commit(from).is_ok() {
        walk.hide(from)?;
    }
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid?;
        out.push(oneline(repo, oid).unwrap_or_else(|| super::short(oid)));
    }
    Ok(out)
}

/// `<short> <summary>` of a commit, if the repository has it.
pub fn oneline(repo: &Repository, oid: Oid) -> Option<String> {
    let c = repo.find_commit(oid).ok()?;
    Some(format!(
        "{} {}",
        super::short(oid),
        c.summary().unwrap_or("")
    ))
}

/// Delete a local branch; fails when it is checked out somewhere.
pub fn delete_branch(repo: &Repository, branch: &str) -> Result<bool> {
    match repo.find_branch(branch, BranchType::Local) {
        Ok(mut b) => {
            let refname = format!("refs/heads/{branch}");
            let rels = [refname.as_str(), "packed-refs"];
            let r = super::snapshot::own_write(repo.commondir(), &rels, || b.delete());
            r.map_err(|e| anyhow!("deleting branch {branch}: {}", e.message()))?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Up to five paths, then "and N more".
pub fn shown(paths: &[String]) -> String {
    let mut s = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        s.push_str(&format!(" and {} more", paths.len() - 5));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let o = std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    #[test]
    fn merges_in_memory_reports_conflicts_and_moves_a_checked_out_branch() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        git(r, &["init", "-q", "-b", "main"]);
        std::fs::write(r.join("a.txt"), "a\n").unwrap();
        std::fs::write(r.join("b.txt"), "b\n").unwrap();
        git(r, &["add", "-A"]);
        git(r, &["commit", "-qm", "init"]);
        git(r, &["checkout", "-qb", "x"]);
        std::fs::write(r.join("a.txt"), "ax\n").unwrap();
        git(r, &["commit", "-qam", "x"]);
        git(r, &["checkout", "-q", "main"]);
        git(r, &["checkout", "-qb", "y"]);
        std::fs::write(r.join("a.txt"), "ay\n").unwrap();
        std::fs::write(r.join("b.txt"), "by\n").unwrap();
        git(r, &["commit", "-qam", "y"]);
        git(r, &["checkout", "-q", "main"]);
        let repo = Repository::open(r).unwrap();
        let main = branch_tip(&repo, "main").unwrap();
        let x = branch_tip(&repo, "x").unwrap();
        let y = branch_tip(&repo, "y").unwrap();
        assert!(is_ancestor(&repo, main, x) && !is_ancestor(&repo, x, y));
        let base = merge_base(&repo, x, y).unwrap();
        assert_eq!(
            merge_onto(&repo, base, tree_of(&repo, x).unwrap(), y).unwrap(),
            TreeMerge::Conflict(vec!["a.txt".into()])
        );
        assert_eq!(checkouts_of(&repo, "main").len(), 1);
        assert!(checkouts_of(&repo, "x").is_empty());

        // Dirty tracked file: refused, nothing moved.
        std::fs::write(r.join("b.txt"), "dirty\n").unwrap();
        let e = move_branch(&repo, "main", main, x, "t").unwrap_err();
        assert!(
            format!("{e:#}").contains("uncommitted changes (b.txt)"),
            "{e:#}"
        );
        assert_eq!(branch_tip(&repo, "main"), Some(main));
        git(r, &["checkout", "--", "b.txt"]);
        // Untracked files don't block; the checkout follows the branch.
        std::fs::write(r.join("notes.txt"), "mine\n").unwrap();
        move_branch(&repo, "main", main, x, "t").unwrap();
        assert_eq!(std::fs::read_to_string(r.join("a.txt")).unwrap(), "ax\n");
        assert_eq!(git(r, &["status", "--porcelain"]), "?? notes.txt");
        assert_eq!(git(r, &["rev-parse", "HEAD"]), x.to_string());
        // Compare-and-swap: a stale `old` is refused.
        assert!(move_branch(&repo, "main", main, y, "t").is_err());
        // An untracked file where the new commit has a tracked one: refused, nothing written.
        git(r, &["checkout", "-qb", "z"]);
        std::fs::write(r.join("c.txt"), "z\n").unwrap();
        git(r, &["add", "c.txt"]);
        git(r, &["commit", "-qm", "z"]);
        git(r, &["checkout", "-q", "main"]);
        std::fs::write(r.join("c.txt"), "mine\n").unwrap();
        let z = branch_tip(&repo, "z").unwrap();
        assert!(move_branch(&repo, "main", x, z, "t").is_err());
        assert_eq!(branch_tip(&repo, "main"), Some(x));
        assert_eq!(std::fs::read_to_string(r.join("c.txt")).unwrap(), "mine\n");
        assert_eq!(std::fs::read_to_string(r.join("a.txt")).unwrap(), "ax\n");
        assert_eq!(log_oneline(&repo, main, x).unwrap().len(), 1);
    }
}
