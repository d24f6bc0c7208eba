//! The git layer (git2): worktrees, commits, revert, scope inputs, refs, the exclude file.

pub mod exclude;
mod fast;
mod inspect;
pub mod merge;
pub mod names;
pub mod scope;
pub mod snapshot;

pub(crate) use fast::forget_walk_state;
pub use names::{worktree_name, worktree_path};

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use git2::{
    BranchType, DiffOptions, IndexAddOption, Oid, Repository, ResetType, Signature, StatusOptions,
    WorktreeAddOptions,
};
use serde::{Deserialize, Serialize};

/// The repository a spec points at: its work tree root and common git dir.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub root: PathBuf,
    pub common_dir: PathBuf,
}

/// Open the repository at `path` (the path itself or a folder inside it).
pub fn open_repo(path: &Path) -> Result<(Repository, RepoInfo)> {
    if !path.exists() {
        bail!("repo {}: no such folder", path.display());
    }
    let repo = Repository::discover(path).map_err(|e| {
        anyhow!(
            "repo {}: not a git repository ({})",
            path.display(),
            e.message()
        )
    })?;
    let root = repo
        .workdir()
        .ok_or_else(|| {
            anyhow!(
                "repo {}: a bare repository has no work tree",
                path.display()
            )
        })?
        .to_path_buf();
    let root = root.canonicalize().unwrap_or(root);
    let common_dir = repo.commondir().to_path_buf();
    Ok((repo, RepoInfo { root, common_dir }))
}

/// Resolve the base: the named branch (or any revision), else the repo's current branch.
pub fn resolve_base(repo: &Repository, base: Option<&str>) -> Result<(String, Oid)> {
    match base {
        Some(name) => {
            let obj = repo.revparse_single(name).map_err(|_| {
                anyhow!(
                    "base {name:?} does not exist in {}; its branches: {}",
                    repo_path(repo),
                    branch_names(repo).join(", ")
                )
            })?;
            let commit = obj
                .peel_to_commit()
                .map_err(|_| anyhow!("base {name:?} is not a commit"))?;
            Ok((name.to_string(), commit.id()))
        }
        None => {
            let head = repo.head().map_err(|_| {
                anyhow!(
                    "{} has no commits yet: commit something first, or set `base`",
                    repo_path(repo)
                )
            })?;
            if !head.is_branch() {
                bail!(
                    "{}: HEAD is detached; set `base` in the spec to the branch to start from",
                    repo_path(repo)
                );
            }
            let name = head.shorthand().unwrap_or("HEAD").to_string();
            let oid = head.peel_to_commit()?.id();
            Ok((name, oid))
        }
    }
}

/// The local branches of a repo, for messages.
fn branch_names(repo: &Repository) -> Vec<String> {
    let mut names: Vec<String> = repo
        .branches(Some(BranchType::Local))
        .map(|bs| {
            bs.filter_map(|b| b.ok())
                .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.push("(none)".into());
    }
    names
}

fn repo_path(repo: &Repository) -> String {
    repo.workdir()
        .unwrap_or_else(|| repo.path())
        .display()
        .to_string()
}

/// Check that a worktree for `id` could be created, without creating anything.
pub fn check_worktree_free(repo: &Repository, id: &str, branch: &str, path: &Path) -> Result<()> {
    if repo.find_branch(branch, BranchType::Local).is_ok() {
        bail!("branch {branch} already exists: choose another id, or `arctl cleanup {id}` / `git branch -D {branch}`");
    }
    if path.exists() {
        bail!(
            "worktree path {} already exists: choose another id or remove it",
            path.display()
        );
    }
    if repo.find_worktree(&worktree_name(id)).is_ok() {
        bail!("a worktree named {} is already registered: run `git worktree prune` or `arctl cleanup {id}`", worktree_name(id));
    }
    Ok(())
}

/// Create branch `branch` at `base` and a worktree for it at `path`. On failure, nothing
/// stays behind.
pub fn create_worktree(
    repo: &Repository,
    id: &str,
    branch: &str,
    base: Oid,
    path: &Path,
) -> Result<()> {
    check_worktree_free(repo, id, branch, path)?;
    // arctl's own change: not a child's (see `snapshot`).
    let head = format!("worktrees/{}/HEAD", worktree_name(id));
    let branch_ref = format!("refs/heads/{branch}");
    snapshot::own_write(repo.commondir(), &[&head, &branch_ref], || {
        create_worktree_inner(repo, id, branch, base, path)
    })
}

fn create_worktree_inner(
    repo: &Repository,
    id: &str,
    branch: &str,
    base: Oid,
    path: &Path,
) -> Result<()> {
    let commit = repo.find_commit(base)?;
    let br = repo
        .branch(branch, &commit, false)
        .with_context(|| format!("creating branch {branch}"))?;
    let mut opts = WorktreeAddOptions::new();
    let reference = br.into_reference();
    // Big trees: written on a few threads, without per-file attribute lookups (see `fast`);
    // libgit2's checkout where the tree or the repo needs it.
    let refname = reference.name().unwrap_or_default().to_string();
    if let Ok(true) = fast::add_worktree(repo, &worktree_name(id), path, Some(&refname), base) {
        return Ok(());
    }
    opts.reference(Some(&reference));
    if let Err(e) = repo.worktree(&worktree_name(id), path, Some(&opts)) {
        // Undo: the branch, a half-made folder and the admin dir.
        let _ = std::fs::remove_dir_all(path);
        let _ = std::fs::remove_dir_all(repo.commondir().join("worktrees").join(worktree_name(id)));
        if let Ok(mut b) = repo.find_branch(branch, BranchType::Local) {
            let _ = b.delete();
        }
        return Err(anyhow!(
            "creating worktree {}: {}",
            path.display(),
            e.message()
        ));
    }
    Ok(())
}

/// Create a detached worktree at `path` on `commit` (the run's second tree, for measuring
/// the current best beside a candidate).
pub fn create_detached_worktree(
    repo: &Repository,
    name: &str,
    path: &Path,
    commit: Oid,
) -> Result<()> {
    if let Ok(wt) = repo.find_worktree(name) {
        let mut po = git2::WorktreePruneOptions::new();
        po.valid(true).working_tree(true).locked(true);
        let _ = wt.prune(Some(&mut po));
    }
    // A kill in the middle of an earlier creation can leave an admin entry libgit2 cannot
    // look up (no `gitdir` yet) whose HEAD holds the temporary branch: it is arctl's own
    // (never watched, see `snapshot`), removed outright.
    let _ = std::fs::remove_dir_all(repo.commondir().join("worktrees").join(name));
    let _ = std::fs::remove_dir_all(path);
    // The fast checkout where the tree allows (see `fast`): a second full checkout per run
    // was half of the daemon's time with 32 runs of 1,000 files.
    if let Ok(true) = fast::add_worktree(repo, name, path, None, commit) {
        return Ok(());
    }
    // git2 worktrees need a branch; make a private ref and detach right away.
    let c = repo.find_commit(commit)?;
    let tmp_branch = format!("arctl-tmp/{name}");
    let br = repo.branch(&tmp_branch, &c, true)?;
    let reference = br.into_reference();
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(&reference));
    let res = repo.worktree(name, path, Some(&opts));
    let res = res.and_then(|_| {
        let wt = Repository::open(path)?;
        wt.set_head_detached(commit)
    });
    if let Ok(mut b) = repo.find_branch(&tmp_branch, BranchType::Local) {
        let _ = b.delete();
    }
    res.map_err(|e| anyhow!("creating worktree {}: {}", path.display(), e.message()))?;
    Ok(())
}

/// Remove a worktree: folder (if any) and git's admin entry, even when locked.
pub fn remove_worktree(repo: &Repository, name: &str, path: &Path) -> Result<()> {
    let head = format!("worktrees/{name}/HEAD");
    snapshot::own_write(repo.commondir(), &[&head], || {
        remove_worktree_inner(repo, name, path)
    })
}

fn remove_worktree_inner(repo: &Repository, name: &str, path: &Path) -> Result<()> {
    forget_walk_state(path);
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    if let Ok(wt) = repo.find_worktree(name) {
        let _ = wt.unlock();
        let mut po = git2::WorktreePruneOptions::new();
        po.valid(true).working_tree(true).locked(true);
        wt.prune(Some(&mut po))
            .with_context(|| format!("pruning worktree {name}"))?;
    }
    Ok(())
}

/// What HEAD of a worktree points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadState {
    Branch { name: String, oid: Oid },
    Detached(Oid),
    Unborn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffStat {
    pub files: usize,
    pub insertions: usize,
    pub deletions: usize,
}

/// A run's worktree, opened.
pub struct WorkTree {
    pub repo: Repository,
    pub path: PathBuf,
    /// The last stat walk of [`WorkTree::changes_since`]: when it started, and whether it
    /// listed a `.gitignore` that is not tracked as it is (see `hidden_by_ignores`).
    pub(crate) rules_walk: std::cell::Cell<Option<(std::time::SystemTime, bool)>>,
    /// What this work tree knows of its index file (see `fast::index_sync`).
    pub(crate) index_state: fast::IndexState,
}

impl WorkTree {
    /// A repository already open, as a work tree (its work dir, or its git dir if bare).
    pub fn from_repo(repo: Repository) -> WorkTree {
        let path = repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf();
        WorkTree {
            repo,
            path,
            rules_walk: Default::default(),
            index_state: Default::default(),
        }
    }

    pub fn open(path: &Path) -> Result<WorkTree> {
        let repo = Repository::open(path)
            .map_err(|e| anyhow!("opening worktree {}: {}", path.display(), e.message()))?;
        Ok(WorkTree {
            repo,
            path: path.to_path_buf(),
            rules_walk: Default::default(),
            index_state: Default::default(),
        })
    }

    pub fn head_state(&self) -> HeadState {
        match self.repo.head() {
            Ok(h) => {
                let oid = h.target().unwrap_or_else(Oid::zero);
                if h.is_branch() {
                    HeadState::Branch {
                        name: h.shorthand().unwrap_or("").to_string(),
                        oid,
                    }
                } else {
                    HeadState::Detached(oid)
                }
            }
            Err(_) => HeadState::Unborn,
        }
    }

    /// Every path that differs between commit `base` and the work tree (staged or not,
    /// untracked included, ignored excluded).
    pub fn changes_since(&self, base: Oid) -> Result<Vec<Change>> {
        let tree = self.repo.find_commit(base)?.tree()?;
        let mut opts = DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(false)
            .include_typechange(true);
        // Only the paths a stat walk finds may differ, when it applies (see `fast`).
        let started = std::time::SystemTime::now();
        self.rules_walk.set(None);
        let paths = self.paths_to_diff(&tree)?;
        if let Some(p) = &paths {
            let rule = |p: &Vec<u8>| p == b".gitignore" || p.ends_with(b"/.gitignore");
            self.rules_walk.set(Some((started, p.iter().any(rule))));
        }
        // Untracked files the ignore rules hide (the run's own TSV and log among them) are
        // left out here: the diff would drop them too, after loading the index and the
        // attributes for them.
        let paths = paths.map(|p| self.drop_ignored_untracked(p, &tree));
        match paths {
            Some(paths) if paths.is_empty() => return Ok(Vec::new()),
            Some(paths) => {
                for p in paths {
                    opts.pathspec(p);
                }
                opts.disable_pathspec_match(true);
            }
            None => {}
        }
        // libgit2's `diff_tree_to_workdir_with_index`, given the index (see `index_sync`).
        let index = self.index()?;
        let mut diff = self
            .repo
            .diff_tree_to_index(Some(&tree), Some(&index), Some(&mut opts))?;
        diff.merge(
            &self
                .repo
                .diff_index_to_workdir(Some(&index), Some(&mut opts))?,
        )?;
        Ok(deltas_to_changes(&diff))
    }

    /// `paths` without those `tree` lacks that the ignore rules match.
    fn drop_ignored_untracked(&self, mut paths: Vec<Vec<u8>>, tree: &git2::Tree) -> Vec<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        paths.retain(|p| {
            let path = Path::new(std::ffi::OsStr::from_bytes(p));
            tree.get_path(path).is_ok() || !self.repo.is_path_ignored(path).unwrap_or(false)
        });
        paths
    }

    fn signature(&self) -> Signature<'static> {
        signature(&self.repo)
    }

    /// Stage everything (honouring ignores) and commit it on HEAD with `parent` as the only
    /// parent. Returns the new commit.
    pub fn commit_all(&self, message: &str, parent: Oid) -> Result<Oid> {
        let mut index = self.repo.index()?;
        index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
        index.update_all(["*"], None)?;
        index.write()?;
        let tree_id = index.write_tree()?;
        let tree = self.repo.find_tree(tree_id)?;
        let parent = self.repo.find_commit(parent)?;
        let sig = self.signature();
        let oid = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
            .context("committing the experiment")?;
        Ok(oid)
    }

    /// Rewrite the last commit with the current work tree (quick fixes amend the experiment).
    pub fn amend_all(&self, commit: Oid) -> Result<Oid> {
        let c = self.repo.find_commit(commit)?;
        let parent = c.parent_id(0)?;
        self.repo
            .reset(&self.repo.find_object(parent, None)?, ResetType::Soft, None)?;
        self.commit_all(c.message().unwrap_or("experiment"), parent)
    }

    /// Put the branch `branch` back on HEAD at `oid` with a clean tree: undoes proposer
    /// commits, branch switches, detached HEADs, edits and untracked files. Ignored files
    /// (build outputs, the run's TSV and log) stay.
    pub fn restore(&self, branch: &str, oid: Oid) -> Result<()> {
        self.restore_from(branch, oid, None)
    }

    /// [`WorkTree::restore`] of a tree known to be clean at commit `clean_at` (a stat walk
    /// just found it so, and nothing can have written it since): only the paths between
    /// the two trees are restored, with no walk.
    pub fn restore_from(&self, branch: &str, oid: Oid, clean_at: Option<Oid>) -> Result<()> {
        let refname = format!("refs/heads/{branch}");
        self.repo
            .reference(&refname, oid, true, "arctl: restore")
            .with_context(|| format!("moving {refname}"))?;
        // HEAD is normally on the branch already: rewriting it would create (and delete) a
        // lock file per experiment.
        let on_branch = self
            .repo
            .find_reference("HEAD")
            .is_ok_and(|h| h.symbolic_target() == Some(refname.as_str()));
        if !on_branch {
            self.repo.set_head(&refname)?;
        }
        // The paths that differ only, when that applies (see `fast`); else the full reset.
        if self.fast_revert(oid, clean_at).unwrap_or(false) {
            return Ok(());
        }
        self.reset_hard(oid)
    }

    /// `restore` without the fast path (the reference the fast path is tested against).
    #[cfg(test)]
    fn restore_full(&self, branch: &str, oid: Oid) -> Result<()> {
        let refname = format!("refs/heads/{branch}");
        self.repo.reference(&refname, oid, true, "arctl: restore")?;
        self.repo.set_head(&refname)?;
        self.reset_hard(oid)
    }

    fn reset_hard(&self, oid: Oid) -> Result<()> {
        let obj = self.repo.find_object(oid, None)?;
        self.index()?; // an index nothing can read is rebuilt first (see `index_sync`)
        let mut co = git2::build::CheckoutBuilder::new();
        co.force().remove_untracked(true);
        self.repo.reset(&obj, ResetType::Hard, Some(&mut co))?;
        self.remove_untracked()?;
        Ok(())
    }

    /// Hard reset a detached tree (the run's best tree) to `oid`.
    pub fn checkout_detached(&self, oid: Oid) -> Result<()> {
        self.repo.set_head_detached(oid)?;
        self.reset_hard(oid)
    }

    fn remove_untracked(&self) -> Result<()> {
        let mut so = StatusOptions::new();
        so.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = self.repo.statuses(Some(&mut so))?;
        for s in statuses.iter() {
            if s.status().contains(git2::Status::WT_NEW) {
                if let Some(p) = s.path() {
                    let full = self.path.join(p.trim_end_matches('/'));
                    // A nested repository is listed as one untracked folder.
                    match std::fs::symlink_metadata(&full) {
                        Ok(md) if md.is_dir() => {
                            let _ = std::fs::remove_dir_all(&full);
                        }
                        _ => {
                            let _ = std::fs::remove_file(&full);
                        }
                    }
                    // Remove folders the proposer created that are now empty.
                    let mut dir = full.parent();
                    while let Some(d) = dir {
                        if d == self.path || std::fs::remove_dir(d).is_err() {
                            break;
                        }
                        dir = d.parent();
                    }
                }
            }
        }
        Ok(())
    }

    /// True when the work tree has no change against HEAD (ignoring ignored files).
    pub fn is_clean(&self) -> Result<bool> {
        let mut so = StatusOptions::new();
        so.include_untracked(true).include_ignored(false);
        Ok(self.repo.statuses(Some(&mut so))?.is_empty())
    }

    pub fn diff_stat(&self, from: Oid, to: Oid) -> Result<DiffStat> {
        let a = self.repo.find_commit(from)?.tree()?;
        let b = self.repo.find_commit(to)?.tree()?;
        let diff = self.diff_trees(&a, &b)?; // the paths that differ only (see `fast`)
        let s = diff.stats()?;
        Ok(DiffStat {
            files: s.files_changed(),
            insertions: s.insertions(),
            deletions: s.deletions(),
        })
    }

    /// The unified diff between two commits, cut to `max` bytes (for the agent's prompt).
    pub fn diff_text(&self, from: Oid, to: Oid, max: usize) -> Result<String> {
        let a = self.repo.find_commit(from)?.tree()?;
        let b = self.repo.find_commit(to)?.tree()?;
        let diff = self.diff_trees(&a, &b)?; // the paths that differ only (see `fast`)
        let mut out = String::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if out.len() < max {
                match line.origin() {
                    '+' | '-' | ' ' => out.push(line.origin()),
                    _ => {}
                }
                out.push_str(&String::from_utf8_lossy(line.content()));
            }
            true
        })?;
        if out.len() >= max {
            let mut cut = max;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("\n[diff cut]\n");
        }
        Ok(out)
    }

    /// Apply a patch file to the work tree. Uses the git CLI: it accepts every patch form
    /// users have (plain diffs, `format-patch` mails with a message before the diff).
    pub fn apply_patch(&self, patch: &Path) -> Result<()> {
        let out = std::process::Command::new("git")
            .arg("apply")
            .arg("--whitespace=nowarn")
            .arg(patch)
            .current_dir(&self.path)
            .output()
            .context("running git apply")?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(anyhow!(
                "does not apply: {}",
                err.lines().last().unwrap_or("git apply failed").trim()
            ))
        }
    }

    pub fn set_ref(&self, name: &str, oid: Oid, msg: &str) -> Result<()> {
        self.repo.reference(name, oid, true, msg)?;
        Ok(())
    }

    pub fn commit_message(&self, oid: Oid) -> Option<String> {
        self.repo
            .find_commit(oid)
            .ok()
            .and_then(|c| c.message().map(str::to_string))
    }
}

/// The changes a diff lists, as the scope check reports them.
fn deltas_to_changes(diff: &git2::Diff) -> Vec<Change> {
    let mut out = Vec::new();
    for d in diff.deltas() {
        use git2::Delta::*;
        let kind = match d.status() {
            Added | Untracked | Copied => ChangeKind::Added,
            Deleted => ChangeKind::Deleted,
            Modified | Renamed | Typechange => ChangeKind::Modified,
            _ => continue,
        };
        let file = if kind == ChangeKind::Deleted {
            d.old_file()
        } else {
            d.new_file()
        };
        if let Some(p) = file.path() {
            out.push(Change {
                path: p.to_string_lossy().replace('\\', "/"),
                kind,
            });
        }
        if d.status() == Renamed {
            if let Some(p) = d.old_file().path() {
                out.push(Change {
                    path: p.to_string_lossy().to_string(),
                    kind: ChangeKind::Deleted,
                });
            }
        }
    }
    out
}

pub fn short(oid: Oid) -> String {
    oid.to_string()[..7].to_string()
}

pub fn parse_oid(s: &str) -> Result<Oid> {
    Oid::from_str(s).map_err(|e| anyhow!("bad commit id {s:?}: {}", e.message()))
}

/// Delete every ref under `refs/autoresearch/<id>/`.
pub fn delete_run_refs(repo: &Repository, id: &str) -> Result<usize> {
    let mut n = 0;
    let glob = format!("{}*", names::run_refs(id));
    let names: Vec<String> = repo
        .references_glob(&glob)?
        .filter_map(|r| r.ok().and_then(|r| r.name().map(str::to_string)))
        .collect();
    for name in names {
        if let Ok(mut r) = repo.find_reference(&name) {
            snapshot::own_write(repo.commondir(), &[&name, "packed-refs"], || r.delete())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Remove git lock files a killed daemon may have left for a run: the worktree's index and
/// HEAD locks and locks on the run's refs. Only the daemon (which holds the state dir's
/// lock) writes these, so a lock found at recovery is stale.
pub fn remove_stale_locks(worktree: &Path, common_dir: &Path, id: &str) -> Vec<String> {
    let mut candidates = Vec::new();
    if let Ok(repo) = Repository::open(worktree) {
        let gitdir = repo.path().to_path_buf();
        candidates.push(gitdir.join("index.lock"));
        candidates.push(gitdir.join("HEAD.lock"));
    }
    candidates.push(common_dir.join(format!("refs/heads/{}.lock", names::branch(id))));
    // The second (best) tree: a kill while it was created or moved leaves its locks.
    let best = names::best_tree_name(id);
    candidates.push(common_dir.join(format!("refs/heads/arctl-tmp/{best}.lock")));
    for f in ["index.lock", "HEAD.lock"] {
        candidates.push(common_dir.join("worktrees").join(&best).join(f));
    }
    let discarded = common_dir.join(format!("{}discarded", names::run_refs(id)));
    if let Ok(entries) = std::fs::read_dir(&discarded) {
        for e in entries.flatten() {
            if e.path().extension().map(|x| x == "lock").unwrap_or(false) {
                candidates.push(e.path());
            }
        }
    }
    candidates
        .into_iter()
        .filter(|p| p.exists() && std::fs::remove_file(p).is_ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// Paths of the files the repo's index tracks.
pub fn tracked_files(repo: &Repository) -> Vec<String> {
    repo.index()
        .map(|idx| {
            idx.iter()
                .map(|e| String::from_utf8_lossy(&e.path).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Commits reachable from `tip` but not from `base` (0 when either is missing).
pub fn count_commits(repo: &Repository, tip: Oid, base: Oid) -> usize {
    let Ok(mut walk) = repo.revwalk() else {
        return 0;
    };
    if walk.push(tip).is_err() {
        return 0;
    }
    let _ = walk.hide(base);
    walk.count()
}

/// Who arctl's commits are by: the repo's configured identity (`user.name` and
/// `user.email`, as git reads them), else the committer of HEAD (so the history stays that
/// person's), else `arctl <arctl@localhost>`.
pub fn signature(repo: &Repository) -> Signature<'static> {
    if let Ok(s) = repo.signature() {
        return s.to_owned();
    }
    let head = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    head.and_then(|c| {
        let who = c.committer();
        Signature::now(who.name()?, who.email()?).ok()
    })
    .unwrap_or_else(|| Signature::now("arctl", "arctl@localhost").expect("static signature"))
}

/// A note for `arctl start` when the repo has no configured identity: whose name arctl's
/// commits will carry, and how to set one.
pub fn identity_note(repo: &Repository) -> Option<String> {
    if repo.signature().is_ok() {
        return None;
    }
    let s = signature(repo);
    Some(format!(
        "no git identity (user.name, user.email) is set for {}: arctl's commits will be authored {} <{}>; set one with `git config user.name ...` and `git config user.email ...`",
        repo_path(repo),
        s.name().unwrap_or("?"),
        s.email().unwrap_or("?")
    ))
}

/// The admin folder (`<common>/worktrees/<name>`) of the linked worktree at `tree`, from
/// its `.git` file. None for a main checkout (its `.git` is the common dir itself).
pub fn admin_dir(tree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(tree.join(".git")).ok()?;
    let dir = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
    let dir = if dir.is_absolute() {
        dir
    } else {
        tree.join(dir)
    };
    Some(dir.canonicalize().unwrap_or(dir))
}
