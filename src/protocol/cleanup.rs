//! `arctl cleanup`: one row per run, saying what was removed and why a branch stays. The
//! stable JSON shape of `cleanup --json`; fields are only ever added.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CleanupReport {
    pub runs: Vec<CleanupRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CleanupRow {
    pub run: String,
    pub worktree: PathBuf,
    /// The worktree (folder and/or git's entry for it) was removed by this cleanup.
    pub worktree_removed: bool,
    pub branch: String,
    pub branch_deleted: bool,
    /// Why the branch stays, when it does.
    pub branch_kept: Option<String>,
    /// `refs/autoresearch/<id>/…` refs deleted.
    pub refs_deleted: usize,
    pub excludes_removed: bool,
    /// What else happened (a locked or already deleted worktree, the best tree removed, ...).
    pub notes: Vec<String>,
    /// Set when this run could not be cleaned up (the client then exits 1).
    pub error: Option<String>,
}
