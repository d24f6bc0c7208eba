//! `arctl show RUN N` / `arctl diff RUN N`: one experiment in full — what was tried and why
//! it was decided so, its diff, and the tails of the outputs of its commands. The stable
//! JSON shape of `show --json`; fields are only ever added.

use serde::{Deserialize, Serialize};

use crate::stats::Evaluation;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExperimentView {
    pub run: String,
    pub experiment: u32,
    /// Full commit id, when something was committed.
    pub commit: Option<String>,
    pub status: String,
    pub description: String,
    /// Why it was decided so (the journal's reason, verbatim).
    pub reason: String,
    /// The proposer's structured proposal (hypothesis, scores), if it wrote one.
    pub hypothesis: Option<serde_json::Value>,
    /// The number the TSV shows.
    pub metric: Option<f64>,
    /// The decision's statistics, when the metric was measured.
    pub decision: Option<Evaluation>,
    pub fix_attempts: u32,
    pub cost_usd: Option<f64>,
    /// The change against its parent (`git show`), or why there is none.
    pub diff: Option<String>,
    pub diff_note: Option<String>,
    /// The last lines of each output the experiment's commands left, proposer first.
    pub outputs: Vec<OutputTail>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputTail {
    /// The file's name: `proposer.err`, `candidate.out`, `guard-tests.err`, ...
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its last lines.
    pub tail: String,
}
