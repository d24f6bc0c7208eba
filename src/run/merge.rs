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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};

use crate::exec::{Cancel, Exit, Limits};
use crate::git::{self, merge::TreeMerge};
use crate::protocol::MergeRequest;
use crate::run::journal::{clean_description, format_metric, ExperimentRecord, Status};
use crate::run::measure::{self, Measured, Meter, Once};
use crate::run::record::{RunRecord, RunState};
use crate::run::{runner, Global, RunHandle};
use crate::spec::Direction;
use crate::stats::{Evaluation, Mode, Verdict};
use crate::store;

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

/// Why a merge or cleanup request could not be carried out at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// Unknown run, active run, runs on different bases: exit 2.
    BadInput(String),
    /// Dirty base, git failure: exit 1.
    Failed(String),
}

/// `arctl merge --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergeReport {
    pub repo: PathBuf,
    /// The runs' base.
    pub base: String,
    /// The branch merged into (`--into`, else the base).
    pub target: String,
    pub dry_run: bool,
    pub squash: bool,
    /// The target's commit before the merge (None: the branch does not exist yet).
    pub before: Option<String>,
    /// The target's commit after it (the same as `before` on a dry run or when nothing landed).
    pub after: Option<String>,
    /// One row per run: candidates in merge order, then the named runs that were not candidates.
    pub rows: Vec<MergeRow>,
    /// Anything else worth saying (a dry run's warnings, a created branch).
    pub notes: Vec<String>,
    /// Set when the merge stopped part-way (a git failure, the base moved or got dirty, the
    /// daemon shutting down): the rows after it say "not attempted"; the client exits 1.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MergeStatus {
    Merged,
    Skipped,
    /// Dry run: would be merged (after re-measurement when `method` says so).
    WouldMerge,
    /// Dry run: would be skipped.
    WouldSkip,
}

impl MergeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStatus::Merged => "merged",
            MergeStatus::Skipped => "skipped",
            MergeStatus::WouldMerge => "would merge",
            MergeStatus::WouldSkip => "would skip",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergeRow {
    /// Position in the merge order, from 1 (0: not a candidate, e.g. no kept improvement).
    pub order: u32,
    pub run: String,
    pub branch: String,
    pub direction: Direction,
    pub baseline: Option<f64>,
    pub best: Option<f64>,
    /// Relative improvement baseline → best of the run alone, in the metric's direction.
    pub gain_alone: Option<f64>,
    /// Relative improvement of the merged tree over the updated base, as re-measured (None:
    /// not re-measured, e.g. a fast-forward of exactly the tree the run measured).
    pub gain_on_top: Option<f64>,
    /// The decision of the re-measurement, as the journal would hold it.
    pub on_top: Option<Evaluation>,
    pub status: MergeStatus,
    /// "fast-forward", "merge-commit" or "squash".
    pub method: Option<String>,
    /// Whether the run's change was (or on a dry run would be) re-measured on top.
    pub remeasured: bool,
    /// The commit that landed.
    pub commit: Option<String>,
    /// Why it was merged or skipped, in plain words.
    pub reason: String,
    /// Conflicting paths, when a conflict skipped it.
    pub conflicts: Vec<String>,
}

struct Candidate {
    h: Arc<RunHandle>,
    rec: RunRecord,
    gain: f64,
}

fn gain_alone(rec: &RunRecord) -> Option<f64> {
    match (rec.baseline, rec.best) {
        (Some(b), Some(x)) => {
            Some(rec.spec.spec.metric.direction.gain(b, x)).filter(|g| !g.is_nan())
        }
        _ => None,
    }
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

fn pct(v: f64) -> String {
    format!("{:+.2}%", v * 100.0)
}

/// Carry out (or plan, with `dry_run`) a merge. `runs` are every run the daemon knows;
/// `cancel` interrupts a re-measurement (daemon shutdown).
pub fn merge(
    runs: &[Arc<RunHandle>],
    g: &Global,
    req: &MergeRequest,
    cancel: &Cancel,
) -> Result<MergeReport, OpError> {
    let dry = req.dry_run;

    // Selection.
    let mut chosen: Vec<Arc<RunHandle>> = Vec::new();
    if req.runs.is_empty() {
        for h in runs {
            let l = h.live();
            let r = &l.record;
            if matches!(r.state, RunState::Finished | RunState::Stopped)
                && !r.merged
                && !r.cleaned_up
            {
                chosen.push(h.clone());
            }
        }
    } else {
        for name in &req.runs {
            let Some(h) = runs.iter().find(|h| h.id == *name) else {
                return Err(OpError::BadInput(crate::run::unknown_run(
                    name,
                    runs.iter().map(|h| h.id.as_str()),
                )));
            };
            if chosen.iter().any(|c| c.id == h.id) {
                continue;
            }
            let state = h.live().record.state;
            if state.is_active() {
                return Err(OpError::BadInput(format!(
                    "run {name} is {}: stop it first with `arctl stop {name}`, then merge",
                    state.as_str()
                )));
            }
            chosen.push(h.clone());
        }
    }
    let mut others: Vec<MergeRow> = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();
    for h in chosen {
        let rec = h.live().record.clone();
        if rec.merged {
            others.push(row(
                0,
                &rec,
                if dry {
                    MergeStatus::WouldSkip
                } else {
                    MergeStatus::Skipped
                },
                "already merged",
            ));
        } else if rec.best_commit == rec.base_commit || rec.counts.kept == 0 {
            others.push(row(
                0,
                &rec,
                if dry {
                    MergeStatus::WouldSkip
                } else {
                    MergeStatus::Skipped
                },
                "no kept improvement",
            ));
        } else {
            let gain = gain_alone(&rec).unwrap_or(0.0);
            cands.push(Candidate { h, rec, gain });
        }
    }
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

    // One repo, one base.
    cands.sort_by(|a, b| b.gain.total_cmp(&a.gain).then(a.rec.id.cmp(&b.rec.id)));
    let first = &cands[0].rec;
    let repos: Vec<&PathBuf> = cands.iter().map(|c| &c.rec.common_dir).collect();
    if repos.iter().any(|r| **r != first.common_dir) {
        let list: Vec<String> = cands
            .iter()
            .map(|c| format!("{} ({})", c.rec.id, c.rec.repo.display()))
            .collect();
        return Err(OpError::BadInput(format!("the runs are in different repositories: {}; merge each repository's runs separately by naming them", list.join(", "))));
    }
    if req.into.is_none() && cands.iter().any(|c| c.rec.base != first.base) {
        let list: Vec<String> = cands
            .iter()
            .map(|c| format!("{} ({})", c.rec.id, c.rec.base))
            .collect();
        return Err(OpError::BadInput(format!(
            "the runs have different bases: {}; name the runs of one base, or pass --into BRANCH",
            list.join(", ")
        )));
    }
    let target = req.into.clone().unwrap_or_else(|| first.base.clone());
    let _lock = RepoLock::take(&first.common_dir).ok_or_else(|| {
        OpError::Failed(format!(
            "another `arctl merge` into {} is in progress; try again when it is done",
            first.repo.display()
        ))
    })?;
    let repo = Repository::open(&first.repo).map_err(|e| {
        OpError::Failed(format!("opening {}: {}", first.repo.display(), e.message()))
    })?;
    let mut notes = Vec::new();
    let tip = match git::merge::branch_tip(&repo, &target) {
        Some(t) => t,
        None if req.into.is_some() => {
            let from = git::merge::branch_tip(&repo, &first.base)
                .or_else(|| git::parse_oid(&first.base_commit).ok())
                .ok_or_else(|| {
                    OpError::Failed(format!(
                        "neither {target} nor the base {} exists",
                        first.base
                    ))
                })?;
            if dry {
                notes.push(format!(
                    "branch {target} does not exist: it would be created at {} ({})",
                    git::short(from),
                    first.base
                ));
            } else {
                let c = repo
                    .find_commit(from)
                    .map_err(|e| OpError::Failed(e.message().to_string()))?;
                repo.branch(&target, &c, false).map_err(|e| {
                    OpError::Failed(format!("creating branch {target}: {}", e.message()))
                })?;
                notes.push(format!(
                    "created branch {target} at {} ({})",
                    git::short(from),
                    first.base
                ));
            }
            from
        }
        None => {
            return Err(OpError::BadInput(format!(
                "the runs' base {target:?} is not a branch of {} (any more): pass --into BRANCH",
                first.repo.display()
            )))
        }
    };

    // The base branch must be safe to move.
    for wt in git::merge::checkouts_of(&repo, &target) {
        let dirty =
            git::merge::tracked_changes(&wt).map_err(|e| OpError::Failed(format!("{e:#}")))?;
        if !dirty.is_empty() {
            let msg = format!(
                "{target} is checked out in {} with uncommitted changes ({}): commit or stash them first",
                wt.display(),
                git::merge::shown(&dirty)
            );
            if dry {
                notes.push(format!("{msg}; a real merge would refuse"));
            } else {
                return Err(OpError::Failed(format!("{msg}; nothing was merged")));
            }
        }
    }

    let mut m = Merger {
        repo: &repo,
        g,
        target: &target,
        squash: req.squash,
        dry,
        tip,
        tree: git::merge::tree_of(&repo, tip).map_err(|e| OpError::Failed(format!("{e:#}")))?,
        landed: Vec::new(),
        cancel,
    };
    let mut rows = Vec::new();
    let mut stop: Option<String> = None;
    for (i, c) in cands.iter().enumerate() {
        let order = i as u32 + 1;
        if let Some(why) = &stop {
            rows.push(row(
                order,
                &c.rec,
                MergeStatus::Skipped,
                format!("not attempted: {why}"),
            ));
            continue;
        }
        let r = match m.one(order, c) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("{e:#}");
                runner::run_log(&c.h, &format!("merge: failed: {msg}"));
                stop = Some(msg.clone());
                row(order, &c.rec, MergeStatus::Skipped, msg)
            }
        };
        let mut r = r;
        if matches!(r.status, MergeStatus::Skipped | MergeStatus::WouldSkip) {
            // Only what landed (or would) has a method.
            r.method = None;
        }
        if r.reason.starts_with("interrupted") {
            stop = Some("the merge was interrupted".into());
        }
        rows.push(r);
    }
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
        error: stop,
    })
}

struct Merger<'a> {
    repo: &'a Repository,
    g: &'a Global,
    target: &'a str,
    squash: bool,
    dry: bool,
    /// The target's commit as updated so far (a dry run leaves it).
    tip: Oid,
    /// The tree of the target as updated so far (a dry run simulates it).
    tree: Oid,
    /// Runs landed (or, on a dry run, that would land) so far.
    landed: Vec<String>,
    cancel: &'a Cancel,
}

impl Merger<'_> {
    fn skip(&self) -> MergeStatus {
        if self.dry {
            MergeStatus::WouldSkip
        } else {
            MergeStatus::Skipped
        }
    }

    fn on_top_of(&self) -> String {
        if self.landed.is_empty() {
            format!("{} (moved since the run started)", self.target)
        } else {
            format!("{} + {}", self.target, self.landed.join(" + "))
        }
    }

    /// Merge one run; Err only for failures that should stop the whole merge.
    fn one(&mut self, order: u32, c: &Candidate) -> Result<MergeRow> {
        let rec = &c.rec;
        let h = &c.h;
        let mut out = row(order, rec, self.skip(), "");
        let best = git::parse_oid(&rec.best_commit)?;
        if !git::merge::has_commit(self.repo, best) {
            out.reason = format!(
                "its best commit {} is no longer in the repository",
                git::short(best)
            );
            return Ok(out);
        }
        let best_tree = git::merge::tree_of(self.repo, best)?;
        // Already there (merged by hand, or an earlier merge).
        if git::merge::is_ancestor(self.repo, best, self.tip) {
            out.reason = format!("already contained in {}", self.target);
            if !self.dry {
                h.update_record(|r| r.merged = true);
            }
            return Ok(out);
        }
        let fast_forward = !self.squash
            && self.landed.is_empty()
            && git::merge::is_ancestor(self.repo, self.tip, best);
        let merged_tree =
            if self.landed.is_empty() && git::merge::is_ancestor(self.repo, self.tip, best) {
                best_tree
            } else {
                let mb = git::merge::merge_base(self.repo, self.tip, best)?;
                match git::merge::merge_onto(self.repo, mb, self.tree, best)? {
                    TreeMerge::Clean(t) => t,
                    TreeMerge::Conflict(paths) => {
                        out.reason = format!(
                            "conflict in {} with {}; branch {} kept for a manual merge",
                            git::merge::shown(&paths),
                            if self.landed.is_empty() {
                                self.target.to_string()
                            } else {
                                self.on_top_of()
                            },
                            rec.branch
                        );
                        out.conflicts = paths;
                        runner::run_log(h, &format!("merge: skipped: {}", out.reason));
                        return Ok(out);
                    }
                }
            };
        let method = if fast_forward {
            "fast-forward"
        } else if self.squash {
            "squash"
        } else {
            "merge-commit"
        };
        out.method = Some(method.into());
        // The run measured exactly `best_tree`; anything else is measured again.
        let remeasure = merged_tree != best_tree;
        out.remeasured = remeasure;
        if self.dry {
            out.status = MergeStatus::WouldMerge;
            out.reason = if remeasure {
                format!(
                    "{method} after re-measuring on top of {}; lands only if it still improves{}",
                    self.on_top_of(),
                    if rec.spec.spec.guards.is_empty() {
                        ""
                    } else {
                        " and its guards pass"
                    }
                )
            } else {
                format!("{method}: the tree its run measured")
            };
            self.tree = merged_tree;
            self.landed.push(rec.id.clone());
            return Ok(out);
        }

        let journal: Vec<ExperimentRecord> = store::read_json_lines(&h.paths.journal())
            .map(|(r, _)| r)
            .unwrap_or_default();
        let parents: Vec<Oid> = if self.squash {
            vec![self.tip]
        } else {
            vec![self.tip, best]
        };
        let mut measured_note = None;
        if remeasure {
            runner::run_log(
                h,
                &format!(
                    "merge: re-measuring on top of {} ({})",
                    self.on_top_of(),
                    git::short(self.tip)
                ),
            );
            // A commit of the merged tree to check out (the final one gets the measurement
            // in its message).
            let probe =
                git::merge::commit(self.repo, merged_tree, &parents, "arctl merge: candidate")?;
            let ev = match self.measure(h, rec, probe, merged_tree)? {
                Ok(ev) => ev,
                Err(why) => {
                    out.reason = why;
                    runner::run_log(h, &format!("merge: skipped: {}", out.reason));
                    return Ok(out);
                }
            };
            out.gain_on_top = Some(ev.estimate).filter(|g| g.is_finite());
            let verdict = ev.verdict;
            let reason = ev.reason.clone();
            measured_note = Some(format!(
                "on top of {}: {} → {} ({})",
                self.on_top_of(),
                format_metric(Some(ev.best_estimate)),
                format_metric(Some(ev.candidate_estimate)),
                out.gain_on_top.map(pct).unwrap_or_else(|| "-".into())
            ));
            out.on_top = Some(ev);
            if verdict != Verdict::Keep {
                out.reason = format!(
                    "no longer improves on top of {}: {reason}; branch {} kept",
                    self.on_top_of(),
                    rec.branch
                );
                runner::run_log(h, &format!("merge: skipped: {}", out.reason));
                return Ok(out);
            }
        }
        let commit = if fast_forward {
            best
        } else {
            let msg = message(
                rec,
                &journal,
                self.target,
                self.squash,
                measured_note.as_deref(),
            );
            git::merge::commit(self.repo, merged_tree, &parents, &msg)?
        };
        git::merge::move_branch(
            self.repo,
            self.target,
            self.tip,
            commit,
            &format!("arctl merge: {}", rec.branch),
        )?;
        self.tip = commit;
        self.tree = merged_tree;
        self.landed.push(rec.id.clone());
        out.status = MergeStatus::Merged;
        out.commit = Some(commit.to_string());
        out.reason = match &measured_note {
            Some(n) => format!("{method}; still improves {n}"),
            None => format!("{method}: the tree its run measured"),
        };
        h.update_record(|r| r.merged = true);
        runner::run_log(
            h,
            &format!(
                "merge: merged into {} as {} ({})",
                self.target,
                git::short(commit),
                out.reason
            ),
        );
        Ok(out)
    }

    /// Measure the merged tree (commit `candidate`) against the updated base, with the run's
    /// metric and rule. Ok(Err(why)) when the measurement itself failed.
    fn measure(
        &self,
        h: &Arc<RunHandle>,
        rec: &RunRecord,
        candidate: Oid,
        merged_tree: Oid,
    ) -> Result<std::result::Result<Evaluation, String>> {
        let dir = h.paths.dir.join("merge");
        let base_path = dir.join("base");
        let cand_path = dir.join("candidate");
        let base_name = format!("arctl-merge-base-{}", rec.id);
        let cand_name = format!("arctl-merge-candidate-{}", rec.id);
        std::fs::create_dir_all(&dir)?;
        let result = (|| -> Result<std::result::Result<Evaluation, String>> {
            git::create_detached_worktree(self.repo, &base_name, &base_path, self.tip)?;
            git::create_detached_worktree(self.repo, &cand_name, &cand_path, candidate)?;
            let l = &rec.spec.spec.limits;
            // Where the run measured (this machine or its cluster).
            let executor = self.g.executor(rec);
            let meter = Meter {
                rec,
                paths: &h.paths,
                global: self.g,
                executor: &*executor,
                // Unpinned: the run's reserved cores were released when it ended; both trees
                // are measured alike, which is what the comparison needs.
                limits: Limits {
                    memory: l.memory.map(|m| m.0),
                    cpu_time: l.cpu_time.map(|d| d.0),
                    cpus: None,
                },
                timeout: measure::metric_timeout(rec),
                env: vec![
                    ("ARCTL_RUN_ID".into(), rec.id.clone()),
                    ("ARCTL_EXPERIMENT".into(), "merge".into()),
                    ("ARCTL_WORKTREE".into(), cand_path.display().to_string()),
                    ("ARCTL_GOAL".into(), rec.spec.spec.goal.clone()),
                ],
                tag_prefix: format!("{}merge/", self.g.run_tag(&rec.id)),
                output_prefix: "merge-".into(),
                log_file: None,
            };
            let cfg = measure::decision_config(rec);
            let (ins, del) = git::merge::tree_diff_lines(
                self.repo,
                git::merge::tree_of(self.repo, self.tip)?,
                merged_tree,
            )?;
            let fewer_lines = del > ins;
            let measured = match rec.mode.clone().unwrap_or(Mode::Deterministic) {
                Mode::Deterministic => match meter.once(&base_path, "best", self.cancel)? {
                    Once::Value(base_value, _) => {
                        runner::run_log(
                            h,
                            &format!(
                                "merge: base {} = {}",
                                git::short(self.tip),
                                format_metric(Some(base_value))
                            ),
                        );
                        meter.deterministic(
                            base_value,
                            &cand_path,
                            &cfg,
                            fewer_lines,
                            self.cancel,
                        )?
                    }
                    Once::Failed(why, _, _) => {
                        return Ok(Err(format!("measuring {} failed: {why}", self.on_top_of())))
                    }
                    Once::Interrupted => Measured::Interrupted,
                },
                Mode::Noisy { .. } => meter.paired(
                    &base_path,
                    &cand_path,
                    &cfg,
                    fewer_lines,
                    self.cancel,
                    |round, ev| {
                        runner::run_log(
                            h,
                            &format!(
                            "merge: round {round}/{}: base {} vs merged {} (estimate {}, p {:.3})",
                            cfg.max_rounds(),
                            format_metric(Some(ev.best_estimate)),
                            format_metric(Some(ev.candidate_estimate)),
                            if ev.estimate.is_finite() { pct(ev.estimate) } else { "-".into() },
                            ev.p_value
                        ),
                        )
                    },
                )?,
            };
            Ok(match measured {
                Measured::Value { evaluation, .. } => {
                    runner::run_log(h, &format!("merge: on top: {}", evaluation.reason));
                    if evaluation.verdict != Verdict::Keep {
                        return Ok(Ok(evaluation));
                    }
                    // Kept in the loop meant: better and every guard passing. The merged
                    // tree is a tree the run never saw, so its guards run on it too.
                    for g in &rec.spec.spec.guards {
                        let (ok, r) = meter.guard(g, &cand_path, self.cancel)?;
                        if r.outcome.exit == Exit::Cancelled {
                            return Ok(Err("interrupted (the daemon is shutting down)".into()));
                        }
                        if !ok {
                            return Ok(Err(format!(
                                "guard {:?} fails on top of {} ({}); branch {} kept",
                                g.name,
                                self.on_top_of(),
                                r.outcome.exit.describe(),
                                rec.branch
                            )));
                        }
                        runner::run_log(h, &format!("merge: guard {:?} passes on top", g.name));
                    }
                    Ok(evaluation)
                }
                Measured::Crash { reason, .. } => {
                    Err(format!("the metric failed on the merged tree: {reason}"))
                }
                Measured::Interrupted => Err("interrupted (the daemon is shutting down)".into()),
            })
        })();
        let _ = git::remove_worktree(self.repo, &base_name, &base_path);
        let _ = git::remove_worktree(self.repo, &cand_name, &cand_path);
        let _ = std::fs::remove_dir(&dir);
        result
    }
}

/// The message of a merge or squash commit: the metric change and the kept experiments.
fn message(
    rec: &RunRecord,
    journal: &[ExperimentRecord],
    target: &str,
    squash: bool,
    on_top: Option<&str>,
) -> String {
    let m = &rec.spec.spec.metric;
    let gain = gain_alone(rec)
        .filter(|g| g.is_finite())
        .map(pct)
        .unwrap_or_else(|| "-".into());
    let change = format!(
        "{} → {} ({gain})",
        format_metric(rec.baseline),
        format_metric(rec.best)
    );
    let subject = if squash {
        let what = if rec.spec.spec.goal.trim().is_empty() {
            format!("autoresearch run {}", rec.id)
        } else {
            clean_description(&rec.spec.spec.goal)
        };
        format!("{what}: {change}")
    } else {
        format!("Merge {} into {target}: {change}", rec.branch)
    };
    let rows = crate::run::report::result_rows(journal, m.direction);
    let kept: Vec<String> = journal
        .iter()
        .zip(&rows)
        .filter(|(r, _)| r.status == Status::Keep)
        .map(|(r, row)| {
            format!(
                "- experiment {} ({}): {}{}",
                r.experiment,
                r.commit
                    .as_deref()
                    .map(|c| &c[..7.min(c.len())])
                    .unwrap_or("-"),
                clean_description(&r.description),
                row.change
                    .map(|c| format!(" ({})", pct(c)))
                    .unwrap_or_default()
            )
        })
        .collect();
    let total = journal
        .iter()
        .filter(|r| r.status != Status::Baseline)
        .count();
    let mut msg = format!("{subject}\n\n");
    msg.push_str(&format!(
        "{} of {} ({}): {} kept experiment(s) of {total}.\n",
        if squash { "Squash" } else { "Merge" },
        rec.branch,
        rec.id,
        kept.len()
    ));
    msg.push_str(&format!(
        "Metric `{}` ({} is better): {change} alone",
        m.command,
        format!("{:?}", m.direction).to_lowercase()
    ));
    match on_top {
        Some(n) => msg.push_str(&format!("; {n}.\n")),
        None => msg.push_str(".\n"),
    }
    if !kept.is_empty() {
        msg.push_str("\nKept experiments:\n");
        msg.push_str(&kept.join("\n"));
        msg.push('\n');
    }
    msg
}
