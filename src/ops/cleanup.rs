//! `arctl cleanup`: remove what a finished run left in the repository — its worktree (even a
//! locked one, or one whose folder is already gone), its second (best) tree, its exclude
//! lines, its `refs/autoresearch/<id>/` refs — and its branch when that is merged into the
//! base or never improved (an improved, unmerged branch needs `--force`; `--keep-branch` keeps
//! any). The state dir keeps the record, journal, TSV and log: `arctl results/report` still
//! work, and the daemon keeps the run registered.
//!
//! A worktree with uncommitted changes (tracked, or untracked files that are not ignored) is
//! only removed with `--force`: those are edits someone made by hand after the run.
//!
//! The JSON shape (`arctl cleanup --json`) is [`CleanupReport`]; fields are only ever added.

use std::sync::Arc;

use git2::Repository;

use crate::git;
use crate::ops::select;
use crate::protocol::{CleanupReport, CleanupRequest, CleanupRow, Error, OpResult};
use crate::run::record::RunRecord;
use crate::run::RunHandle;

/// Clean up the runs `req` names (or every ended run with `--finished`).
pub fn cleanup(runs: &[Arc<RunHandle>], req: &CleanupRequest) -> OpResult<CleanupReport> {
    if req.runs.is_empty() && !req.finished {
        return Err(Error::bad_input(
            "name the runs to clean up, or pass --finished for every ended run",
        ));
    }
    let chosen = select(runs, &req.runs, |r| !r.state().is_active() && !r.cleaned_up)?;
    // Refuse before touching anything when one of them still runs.
    for h in &chosen {
        let state = h.state();
        // A run that just stopped may still be closing (its second tree): give it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !state.is_active() && h.is_thread_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !state.is_active() && h.is_thread_running() {
            return Err(Error::failed(format!(
                "run {} is {} but its thread is still closing; try again in a moment",
                h.id,
                state.as_str()
            )));
        }
        if state.is_active() {
            return Err(Error::bad_input(format!(
                "run {} is {}: stop it first with `arctl stop {}` (nothing was cleaned up)",
                h.id,
                state.as_str(),
                h.id
            )));
        }
    }
    // `[setup]` exclude lines other runs (not cleaned up) of a repository still need.
    let kept: Vec<(std::path::PathBuf, String)> = runs
        .iter()
        .filter(|h| !chosen.iter().any(|c| c.id == h.id))
        .map(|h| h.record())
        .filter(|r| !r.cleaned_up)
        .flat_map(|r| {
            let dir = r.common_dir.clone();
            r.setup_excludes.into_iter().map(move |l| (dir.clone(), l))
        })
        .collect();
    Ok(CleanupReport {
        runs: chosen.iter().map(|h| one(h, req, &kept)).collect(),
    })
}

fn one(h: &RunHandle, req: &CleanupRequest, kept: &[(std::path::PathBuf, String)]) -> CleanupRow {
    let rec = h.record();
    let mut row = CleanupRow {
        run: rec.id.clone(),
        worktree: rec.worktree.clone(),
        worktree_removed: false,
        branch: rec.branch.clone(),
        branch_deleted: false,
        branch_kept: None,
        refs_deleted: 0,
        excludes_removed: false,
        notes: vec![],
        error: None,
    };
    let repo = match Repository::open(&rec.repo) {
        Ok(r) => r,
        Err(e) => {
            row.notes.push(format!(
                "the repository {} cannot be opened ({}): nothing to remove there",
                rec.repo.display(),
                e.message()
            ));
            h.update_logged(|r| r.cleaned_up = true);
            return row;
        }
    };
    if let Err(why) = remove_worktree(&repo, &rec, req, &mut row) {
        row.error = Some(why);
        return row;
    }
    remove_extra_trees(&repo, h, &mut row);
    branch(&repo, &rec, req, &mut row);
    excludes_and_refs(&repo, &rec, kept, &mut row);
    h.update_logged(|r| r.cleaned_up = true);
    h.log_line(&format!(
        "cleanup: worktree {}; branch {}; {} deleted",
        if row.worktree_removed {
            "removed"
        } else {
            "already gone"
        },
        if row.branch_deleted {
            "deleted".to_string()
        } else {
            row.branch_kept.clone().unwrap_or_else(|| "gone".into())
        },
        crate::protocol::format::count(row.refs_deleted, "ref")
    ));
    row
}

/// Paths with uncommitted changes in a worktree (tracked, or untracked and not ignored).
fn uncommitted(worktree: &std::path::Path) -> Vec<String> {
    let Ok(wt) = git::WorkTree::open(worktree) else {
        return Vec::new();
    };
    let mut so = git2::StatusOptions::new();
    so.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    wt.repo
        .statuses(Some(&mut so))
        .map(|s| {
            s.iter()
                .filter_map(|e| e.path().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The run's worktree: removed (locked, or with its folder already gone, too); one with
/// edits made after the run only with `--force`. Err: why it stays.
fn remove_worktree(
    repo: &Repository,
    rec: &RunRecord,
    req: &CleanupRequest,
    row: &mut CleanupRow,
) -> Result<(), String> {
    let name = git::worktree_name(&rec.id);
    let registered = repo.find_worktree(&name).ok();
    let locked = registered
        .as_ref()
        .map(|w| matches!(w.is_locked(), Ok(git2::WorktreeLockStatus::Locked(_))))
        .unwrap_or(false);
    let folder = rec.worktree.exists();
    if folder && !req.force {
        let dirty = uncommitted(&rec.worktree);
        if !dirty.is_empty() {
            return Err(format!(
                "worktree {} has uncommitted changes ({}): commit them, or pass --force to discard them",
                rec.worktree.display(),
                git::merge::shown(&dirty)
            ));
        }
    }
    if !folder && registered.is_none() {
        row.notes.push("the worktree was already removed".into());
        return Ok(());
    }
    git::remove_worktree(repo, &name, &rec.worktree)
        .map_err(|e| format!("removing the worktree: {e:#}"))?;
    row.worktree_removed = true;
    if !folder {
        row.notes
            .push("the worktree folder was already gone: pruned git's entry for it".into());
    }
    if locked {
        row.notes
            .push("the worktree was locked: unlocked and removed".into());
    }
    Ok(())
}

/// The second tree of noisy mode, and the temporary trees of an interrupted merge.
fn remove_extra_trees(repo: &Repository, h: &RunHandle, row: &mut CleanupRow) {
    let (merge_base, merge_candidate) = git::names::merge_tree_names(&h.id);
    let extra = [
        (git::names::best_tree_name(&h.id), h.paths.best_tree()),
        (merge_base, h.paths.merge_dir().join("base")),
        (merge_candidate, h.paths.merge_dir().join("candidate")),
    ];
    for (wname, path) in extra {
        if path.exists() || repo.find_worktree(&wname).is_ok() {
            match git::remove_worktree(repo, &wname, &path) {
                Ok(()) => row
                    .notes
                    .push(format!("removed the second worktree {}", path.display())),
                Err(e) => row
                    .notes
                    .push(format!("could not remove {}: {e:#}", path.display())),
            }
        }
    }
    let _ = std::fs::remove_dir(h.paths.merge_dir());
}

/// The run's branch: deleted when merged, never improved, or `--force`; else kept, with why.
fn branch(repo: &Repository, rec: &RunRecord, req: &CleanupRequest, row: &mut CleanupRow) {
    let Some(tip) = git::merge::branch_tip(repo, &rec.branch) else {
        row.notes
            .push(format!("branch {} was already gone", rec.branch));
        return;
    };
    let base_commit = git::parse_oid(&rec.base_commit).ok();
    let best = git::parse_oid(&rec.best_commit).ok();
    let never_improved = Some(tip) == base_commit;
    let in_base = git::merge::branch_tip(repo, &rec.base)
        .map(|b| git::merge::is_ancestor(repo, tip, b))
        .unwrap_or(false);
    let merged = in_base || (rec.merged && Some(tip) == best);
    let keep = if req.keep_branch {
        Some("kept (--keep-branch)".to_string())
    } else if req.force || never_improved || merged {
        None
    } else if Some(tip) != best {
        Some(format!(
            "kept: it has commits arctl did not make (tip {} is not the run's best {}); delete it with `arctl cleanup {} --force`",
            git::short(tip),
            best.map(git::short).unwrap_or_default(),
            rec.id
        ))
    } else {
        Some(format!(
            "kept: {} not merged into {}; merge {} with `arctl merge {}`, or delete the branch with `arctl cleanup {} --force`",
            match rec.counts.kept {
                1 => "its kept experiment is".to_string(),
                n => format!("its {n} kept experiments are"),
            },
            rec.base,
            if rec.counts.kept == 1 { "it" } else { "them" },
            rec.id,
            rec.id
        ))
    };
    if let Some(why) = keep {
        row.branch_kept = Some(why);
        return;
    }
    match git::merge::delete_branch(repo, &rec.branch) {
        Ok(d) => {
            row.branch_deleted = d;
            if d {
                let why = if never_improved {
                    "no improvement".to_string()
                } else if merged {
                    format!("merged into {}", rec.base)
                } else {
                    "--force".to_string()
                };
                row.notes.push(format!(
                    "deleted branch {} (was {}; {why})",
                    rec.branch,
                    git::short(tip)
                ));
            }
        }
        Err(e) => row.branch_kept = Some(format!("kept: {e:#}")),
    }
}

/// The exclude lines of the run's files (and of what its `[setup]` made, unless another run
/// still records them), and its refs under `refs/autoresearch/<id>/`.
fn excludes_and_refs(
    repo: &Repository,
    rec: &RunRecord,
    kept: &[(std::path::PathBuf, String)],
    row: &mut CleanupRow,
) {
    let mut excludes = vec![rec.spec.tsv_name(), rec.spec.log_name()];
    excludes.extend(
        rec.setup_excludes
            .iter()
            .filter(|l| !kept.iter().any(|(d, k)| *d == rec.common_dir && k == *l))
            .cloned(),
    );
    match git::exclude::remove(&rec.common_dir, &excludes) {
        Ok(()) => row.excludes_removed = true,
        Err(e) => row
            .notes
            .push(format!("could not edit the exclude file: {e:#}")),
    }
    match git::delete_run_refs(repo, &rec.id) {
        Ok(n) => row.refs_deleted = n,
        Err(e) => row.notes.push(format!(
            "could not delete {}: {e:#}",
            git::names::run_refs(&rec.id)
        )),
    }
}
