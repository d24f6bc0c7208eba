//! Landing one run of a merge: a fast-forward or a merge (or squash) commit of its best
//! tree onto the target as updated so far, after a re-measurement when the tree differs from
//! what the run measured. A conflict or a change that no longer improves skips the run.

use anyhow::Result;
use git2::{Oid, Repository};

use super::message::message;
use super::{row, skipped, Candidate};
use crate::exec::Cancel;
use crate::git::{self, merge::TreeMerge};
use crate::protocol::format::{format_metric, pct_or_dash};
use crate::protocol::{MergeRow, MergeStatus};
use crate::run::journal::ExperimentRecord;
use crate::run::record::RunRecord;
use crate::run::Global;
use crate::stats::Verdict;
use crate::store;

pub(super) struct Merger<'a> {
    pub(super) repo: &'a Repository,
    pub(super) g: &'a Global,
    pub(super) target: &'a str,
    pub(super) squash: bool,
    pub(super) dry: bool,
    /// The target's commit as updated so far (a dry run leaves it).
    pub(super) tip: Oid,
    /// The tree of the target as updated so far (a dry run simulates it).
    pub(super) tree: Oid,
    /// Runs landed (or, on a dry run, that would land) so far.
    pub(super) landed: Vec<String>,
    pub(super) cancel: &'a Cancel,
}

impl Merger<'_> {
    /// Land the candidates in order; a failure that stops the whole merge leaves the rest
    /// "not attempted" and is returned beside the rows.
    pub(super) fn all(&mut self, cands: &[Candidate]) -> (Vec<MergeRow>, Option<String>) {
        let mut rows = Vec::new();
        let mut stop: Option<String> = None;
        for (i, c) in cands.iter().enumerate() {
            let order = i as u32 + 1;
            if let Some(why) = &stop {
                let reason = format!("not attempted: {why}");
                rows.push(row(order, &c.rec, MergeStatus::Skipped, reason));
                continue;
            }
            let mut r = self.one(order, c).unwrap_or_else(|e| {
                let msg = format!("{e:#}");
                c.h.log_line(&format!("merge: failed: {msg}"));
                stop = Some(msg.clone());
                row(order, &c.rec, MergeStatus::Skipped, msg)
            });
            if matches!(r.status, MergeStatus::Skipped | MergeStatus::WouldSkip) {
                // Only what landed (or would) has a method.
                r.method = None;
            }
            if r.reason.starts_with("interrupted") {
                stop = Some("the merge was interrupted".into());
            }
            rows.push(r);
        }
        (rows, stop)
    }

    fn skip(&self) -> MergeStatus {
        skipped(self.dry)
    }

    pub(super) fn on_top_of(&self) -> String {
        if self.landed.is_empty() {
            format!("{} (moved since the run started)", self.target)
        } else {
            format!("{} + {}", self.target, self.landed.join(" + "))
        }
    }

    /// Merge one run; Err only for failures that should stop the whole merge.
    fn one(&mut self, order: u32, c: &Candidate) -> Result<MergeRow> {
        let (rec, h) = (&c.rec, &c.h);
        let mut out = row(order, rec, self.skip(), "");
        let best = git::parse_oid(&rec.best_commit)?;
        if !git::merge::has_commit(self.repo, best) {
            out.reason = format!(
                "its best commit {} is no longer in the repository",
                git::short(best)
            );
            return Ok(out);
        }
        // Already there (merged by hand, or an earlier merge).
        if git::merge::is_ancestor(self.repo, best, self.tip) {
            out.reason = format!("already contained in {}", self.target);
            if !self.dry {
                h.update_logged(|r| r.merged = true);
            }
            return Ok(out);
        }
        let Some(merged_tree) = self.merged_tree(c, best, &mut out)? else {
            return Ok(out); // a conflict
        };
        let fast_forward = !self.squash
            && self.landed.is_empty()
            && git::merge::is_ancestor(self.repo, self.tip, best);
        let method = if fast_forward {
            "fast-forward"
        } else if self.squash {
            "squash"
        } else {
            "merge-commit"
        };
        out.method = Some(method.into());
        // The run measured exactly its best tree; anything else is measured again.
        out.remeasured = merged_tree != git::merge::tree_of(self.repo, best)?;
        if self.dry {
            self.plan(rec, merged_tree, method, &mut out);
            return Ok(out);
        }
        let parents: Vec<Oid> = if self.squash {
            vec![self.tip]
        } else {
            vec![self.tip, best]
        };
        let note = if out.remeasured {
            match self.still_improves(c, merged_tree, &parents, &mut out)? {
                Some(note) => Some(note),
                None => return Ok(out), // skipped, with the reason
            }
        } else {
            None
        };
        let commit = if fast_forward {
            best
        } else {
            let journal: Vec<ExperimentRecord> = store::read_json_lines(&h.paths.journal())
                .map(|(r, _)| r)
                .unwrap_or_default();
            let msg = message(rec, &journal, self.target, self.squash, note.as_deref());
            git::merge::commit(self.repo, merged_tree, &parents, &msg)?
        };
        self.land(c, commit, merged_tree)?;
        out.status = MergeStatus::Merged;
        out.commit = Some(commit.to_string());
        out.reason = match &note {
            Some(n) => format!("{method}; still improves {n}"),
            None => format!("{method}: the tree its run measured"),
        };
        h.log_line(&format!(
            "merge: merged into {} as {} ({})",
            self.target,
            git::short(commit),
            out.reason
        ));
        Ok(out)
    }

    /// The tree of the run's best merged onto the target as updated so far; None (and the
    /// row says why) on a conflict.
    fn merged_tree(&self, c: &Candidate, best: Oid, out: &mut MergeRow) -> Result<Option<Oid>> {
        if self.landed.is_empty() && git::merge::is_ancestor(self.repo, self.tip, best) {
            return Ok(Some(git::merge::tree_of(self.repo, best)?));
        }
        let mb = git::merge::merge_base(self.repo, self.tip, best)?;
        match git::merge::merge_onto(self.repo, mb, self.tree, best)? {
            TreeMerge::Clean(t) => Ok(Some(t)),
            TreeMerge::Conflict(paths) => {
                out.reason = format!(
                    "conflict in {} with {}; branch {} kept for a manual merge",
                    git::merge::shown(&paths),
                    if self.landed.is_empty() {
                        self.target.to_string()
                    } else {
                        self.on_top_of()
                    },
                    c.rec.branch
                );
                out.conflicts = paths;
                c.h.log_line(&format!("merge: skipped: {}", out.reason));
                Ok(None)
            }
        }
    }

    /// A dry run: what would happen, and the target as if it had.
    fn plan(&mut self, rec: &RunRecord, merged_tree: Oid, method: &str, out: &mut MergeRow) {
        out.status = MergeStatus::WouldMerge;
        out.reason = if out.remeasured {
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
    }

    /// Re-measure the merged tree on top of the updated target. Some(note on the gain) when
    /// it still improves; None when it is skipped (the row says why).
    fn still_improves(
        &self,
        c: &Candidate,
        merged_tree: Oid,
        parents: &[Oid],
        out: &mut MergeRow,
    ) -> Result<Option<String>> {
        let (rec, h) = (&c.rec, &c.h);
        h.log_line(&format!(
            "merge: re-measuring on top of {} ({})",
            self.on_top_of(),
            git::short(self.tip)
        ));
        // A commit of the merged tree to check out (the final one gets the measurement in
        // its message).
        let probe = git::merge::commit(self.repo, merged_tree, parents, "arctl merge: candidate")?;
        let ev = match self.measure(h, rec, probe, merged_tree)? {
            Ok(ev) => ev,
            Err(why) => {
                out.reason = why;
                h.log_line(&format!("merge: skipped: {}", out.reason));
                return Ok(None);
            }
        };
        out.gain_on_top = Some(ev.estimate).filter(|g| g.is_finite());
        let note = format!(
            "on top of {}: {} → {} ({})",
            self.on_top_of(),
            format_metric(Some(ev.best_estimate)),
            format_metric(Some(ev.candidate_estimate)),
            pct_or_dash(out.gain_on_top)
        );
        let (verdict, reason) = (ev.verdict, ev.reason.clone());
        out.on_top = Some(ev);
        if verdict == Verdict::Keep {
            return Ok(Some(note));
        }
        out.reason = format!(
            "no longer improves on top of {}: {reason}; branch {} kept",
            self.on_top_of(),
            rec.branch
        );
        h.log_line(&format!("merge: skipped: {}", out.reason));
        Ok(None)
    }

    /// Move the target to `commit` (compare-and-swap) and record the run as merged.
    fn land(&mut self, c: &Candidate, commit: Oid, merged_tree: Oid) -> Result<()> {
        git::merge::move_branch(
            self.repo,
            self.target,
            self.tip,
            commit,
            &format!("arctl merge: {}", c.rec.branch),
        )?;
        self.tip = commit;
        self.tree = merged_tree;
        self.landed.push(c.rec.id.clone());
        c.h.update_logged(|r| r.merged = true);
        Ok(())
    }
}
