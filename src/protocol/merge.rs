//! `arctl merge`: one row per run, in merge order, with its gain alone and on top of the runs
//! merged before it. The stable JSON shape of `merge --json`; fields are only ever added.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spec::Direction;
use crate::stats::Evaluation;

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
    /// Relative improvement baseline → best of the run alone, in the metric's direction,
    /// from same-time comparisons (its final confirmation, else the chain of its kept
    /// experiments' paired estimates): the merge order.
    pub gain_alone: Option<f64>,
    /// The 95% interval of `gain_alone`.
    #[serde(default)]
    pub gain_alone_interval: Option<[f64; 2]>,
    /// "confirmation" or "chain".
    #[serde(default)]
    pub gain_source: Option<String>,
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
