//! `arctl merge`: land the kept improvements of finished runs on their base branch, largest
//! relative improvement first. The first whose tree is exactly what its run measured lands
//! as it is (fast-forward, or a merge commit / squash commit with that tree); every other one
//! is merged onto the updated base in a temporary worktree and re-measured against that base
//! with the run's own metric command and decision rule ([`crate::run::measure`]), then its
//! guards; it lands only if it still improves and every guard passes. A conflict skips a run
//! and names the files; its branch stays.
//!
//! Safety of the base branch: when it is checked out in a work tree (usually the main repo)
//! whose *tracked* files have changes (staged or not), the merge is refused before anything
//! happens (exit 1). Untracked files don't block: they are left alone, and a merged file
//! that would overwrite one makes that landing fail instead. A checked-out, clean base ends up
//! at the new commit with its files and index updated. The branch is moved compare-and-swap,
//! so a commit made to it during a long re-measurement is never lost (that run is skipped).
//!
//! The JSON shape (`arctl merge --json`) is [`MergeReport`]; fields are only ever added.
//! Landing one run is in `land`, its re-measurement in `remeasure`, the commit message in
//! `message`.

mod land;
mod message;
mod remeasure;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::{Oid, Repository};

use crate::exec::Cancel;
use crate::git;
use crate::ops::select;
use crate::protocol::{
    Error, MergeReport, MergeRequest, MergeRow, MergeStatus, OpResult, RunState,
};
use crate::run::record::RunRecord;
use crate::run::{Global, RunHandle};
use land::Merger;

/// Repositories (common dirs) being merged into now: one merge at a time per repository.
static MERGING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

struct RepoLock(PathBuf);

impl RepoLock {
    fn take(common_dir: &Path) -> Option<RepoLock> {
        let mut m = MERGING.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(common_dir.to_path_buf())
            .then(|| RepoLock(common_dir.to_path_buf()))
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        MERGING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

struct Candidate {
    h: Arc<RunHandle>,
    rec: RunRecord,
    gain: f64,
}

/// A run's own gain, from same-time comparisons only (its final confirmation, else the chain
/// of its kept experiments' paired estimates): never the ratio of its raw baseline and best,
/// measured at different times under different load.
fn gain_alone(rec: &RunRecord) -> Option<f64> {
    rec.gain.map(|g| g.gain).filter(|g| !g.is_nan())
}

fn row(order: u32, rec: &RunRecord, status: MergeStatus, reason: impl Into<String>) -> MergeRow {
    MergeRow {
        order,
        run: rec.id.clone(),
        branch: rec.branch.clone(),
        direction: rec.spec.spec.metric.direction,
        baseline: rec.baseline,
        best: rec.best,
        gain_alone: gain_alone(rec).filter(|g| g.is_finite()),
        gain_alone_interval: rec.gain.map(|g| [g.low, g.high]).filter(|i| i[0] != i[1]),
        gain_source: rec.gain.map(|g| g.source().to_string()),
        gain_on_top: None,
        on_top: None,
        status,
        method: None,
        remeasured: false,
        commit: None,
        reason: reason.into(),
        conflicts: vec![],
    }
}

fn skipped(dry: bool) -> MergeStatus {
    if dry {
        MergeStatus::WouldSkip
    } else {
        MergeStatus::Skipped
    }
}

/// Carry out (or plan, with `dry_run`) a merge. `runs` are every run the daemon knows;
/// `cancel` interrupts a re-measurement (daemon shutdown).
pub fn merge(
    runs: &[Arc<RunHandle>],
    g: &Global,
    req: &MergeRequest,
    cancel: &Cancel,
) -> OpResult<MergeReport> {
    let dry = req.dry_run;
    if let Some(into) = &req.into {
        check_branch_name(into)?;
    }
    let chosen = select(runs, &req.runs, |r| {
        matches!(r.state(), RunState::Finished | RunState::Stopped) && !r.merged && !r.cleaned_up
    })?;
    if let Some(h) = chosen.iter().find(|h| h.state().is_active()) {
        return Err(Error::bad_input(format!(
            "run {0} is {1}: stop it first with `arctl stop {0}`, then merge",
            h.id,
            h.state().as_str()
        )));
    }
    let (cands, others) = candidates(chosen, dry);
    if cands.is_empty() {
        return Ok(MergeReport {
            repo: PathBuf::new(),
            base: String::new(),
            target: req.into.clone().unwrap_or_default(),
            dry_run: dry,
            squash: req.squash,
            before: None,
            after: None,
            rows: others,
            notes: vec![
                "nothing to merge: no finished or stopped run with a kept improvement".into(),
            ],
            error: None,
        });
    }
    let first = &cands[0].rec;
    one_repo_one_base(&cands, req)?;
    let target = req.into.clone().unwrap_or_else(|| first.base.clone());
    let _lock = RepoLock::take(&first.common_dir).ok_or_else(|| {
        Error::failed(format!(
            "another `arctl merge` into {} is in progress; try again when it is done",
            first.repo.display()
        ))
    })?;
    let repo = Repository::open(&first.repo)
        .map_err(|e| Error::failed(format!("opening {}: {}", first.repo.display(), e.message())))?;
    let mut notes = Vec::new();
    let tip = target_tip(&repo, first, &target, req, &mut notes)?;
    check_target_clean(&repo, &target, dry, &mut notes)?;

    let mut m = Merger {
        repo: &repo,
        g,
        target: &target,
        squash: req.squash,
        dry,
        tip,
        tree: git::merge::tree_of(&repo, tip).map_err(Error::from_anyhow)?,
        landed: Vec::new(),
        cancel,
    };
    let (mut rows, error) = m.all(&cands);
    rows.extend(others);
    Ok(MergeReport {
        repo: first.repo.clone(),
        base: first.base.clone(),
        target: target.clone(),
        dry_run: dry,
        squash: req.squash,
        before: Some(tip.to_string()),
        after: Some(m.tip.to_string()),
        rows,
        notes,
        error,
    })
}

/// `--into` must name a branch git would accept (checked before anything, dry run or not).
fn check_branch_name(name: &str) -> OpResult<()> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{name}")) && !name.starts_with('-') {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "--into {name:?} is not a valid branch name: expected a name like \"main\" or \"autoresearch/merged\" (no spaces, no \"..\", not empty)"
    )))
}

/// The chosen runs with a kept improvement, largest gain first, and rows for the others.
fn candidates(chosen: Vec<Arc<RunHandle>>, dry: bool) -> (Vec<Candidate>, Vec<MergeRow>) {
    let mut others = Vec::new();
    let mut cands = Vec::new();
    for h in chosen {
        let rec = h.record();
        if rec.merged {
            others.push(row(0, &rec, skipped(dry), "already merged"));
        } else if rec.best_commit == rec.base_commit || rec.counts.kept == 0 {
            others.push(row(0, &rec, skipped(dry), "no kept improvement"));
        } else {
            let gain = gain_alone(&rec).unwrap_or(0.0);
            cands.push(Candidate { h, rec, gain });
        }
    }
    cands.sort_by(|a, b| b.gain.total_cmp(&a.gain).then(a.rec.id.cmp(&b.rec.id)));
    (cands, others)
}

/// All candidates must be in one repository and (without `--into`) on one base.
fn one_repo_one_base(cands: &[Candidate], req: &MergeRequest) -> OpResult<()> {
    let first = &cands[0].rec;
    if cands.iter().any(|c| c.rec.common_dir != first.common_dir) {
        let list: Vec<String> = cands
            .iter()
            .map(|c| format!("{} ({})", c.rec.id, c.rec.repo.display()))
            .collect();
        return Err(Error::bad_input(format!("the runs are in different repositories: {}; merge each repository's runs separately by naming them", list.join(", "))));
    }
    if req.into.is_none() && cands.iter().any(|c| c.rec.base != first.base) {
        let list: Vec<String> = cands
            .iter()
            .map(|c| format!("{} ({})", c.rec.id, c.rec.base))
            .collect();
        return Err(Error::bad_input(format!(
            "the runs have different bases: {}; name the runs of one base, or pass --into BRANCH",
            list.join(", ")
        )));
    }
    Ok(())
}

/// The target branch's commit; a missing `--into` branch is created at the base (or, on a
/// dry run, would be).
fn target_tip(
    repo: &Repository,
    first: &RunRecord,
    target: &str,
    req: &MergeRequest,
    notes: &mut Vec<String>,
) -> OpResult<Oid> {
    if let Some(t) = git::merge::branch_tip(repo, target) {
        return Ok(t);
    }
    if req.into.is_none() {
        return Err(Error::bad_input(format!(
            "the runs' base {target:?} is not a branch of {} (any more): pass --into BRANCH",
            first.repo.display()
        )));
    }
    let from = git::merge::branch_tip(repo, &first.base)
        .or_else(|| git::parse_oid(&first.base_commit).ok())
        .ok_or_else(|| {
            Error::failed(format!(
                "neither {target} nor the base {} exists",
                first.base
            ))
        })?;
    if req.dry_run {
        notes.push(format!(
            "branch {target} does not exist: it would be created at {} ({})",
            git::short(from),
            first.base
        ));
        return Ok(from);
    }
    let c = repo
        .find_commit(from)
        .map_err(|e| Error::failed(e.message().to_string()))?;
    repo.branch(target, &c, false)
        .map_err(|e| Error::failed(format!("creating branch {target}: {}", e.message())))?;
    notes.push(format!(
        "created branch {target} at {} ({})",
        git::short(from),
        first.base
    ));
    Ok(from)
}

/// The target branch must be safe to move: no checkout of it with uncommitted changes.
fn check_target_clean(
    repo: &Repository,
    target: &str,
    dry: bool,
    notes: &mut Vec<String>,
) -> OpResult<()> {
    for wt in git::merge::checkouts_of(repo, target) {
        let dirty = git::merge::tracked_changes(&wt).map_err(Error::from_anyhow)?;
        if dirty.is_empty() {
            continue;
        }
        let msg = format!(
            "{target} is checked out in {} with uncommitted changes ({}): commit or stash them first",
            wt.display(),
            git::merge::shown(&dirty)
        );
        if !dry {
            return Err(Error::failed(format!("{msg}; nothing was merged")));
        }
        notes.push(format!("{msg}; a real merge would refuse"));
    }
    Ok(())
}
