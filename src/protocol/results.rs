//! `arctl results`: the experiment table as the TSV holds it, plus the decision details
//! from the journal. The stable JSON shape of `results RUN --json`; fields are only ever
//! added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::GainEstimate;
use crate::spec::Direction;

/// What CHANGE means (README and `results --json`).
pub const CHANGE_DEFINITION: &str = "the experiment's own change against the best of its time, as its decision measured it: the paired estimate of the rounds (noisy mode) or the strict comparison (deterministic); positive = better; '-' where nothing was measured";
/// What CONF means (README and `results --json`).
pub const CONF_DEFINITION: &str = "1 - p, with p the one-sided p-value of the paired test that the candidate is no better than the best of its time (Huber t, or the sign-flip test when rounds tie); '-' for deterministic decisions (exact) and where nothing was measured";

/// The experiment table as the TSV holds it, plus decision details from the journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultsTable {
    pub run: String,
    pub direction: Direction,
    pub rows: Vec<ResultRow>,
    /// The run's gain against its baseline from same-time comparisons (the final
    /// confirmation, else the chain of the kept experiments' estimates).
    #[serde(default)]
    pub gain: Option<GainEstimate>,
    /// The meaning of the columns `change` and `confidence`.
    #[serde(default)]
    pub definitions: BTreeMap<String, String>,
}

impl ResultsTable {
    /// A table with the column definitions filled in.
    pub fn new(
        run: String,
        direction: Direction,
        rows: Vec<ResultRow>,
        gain: Option<GainEstimate>,
    ) -> ResultsTable {
        let definitions = [
            ("change", CHANGE_DEFINITION),
            ("confidence", CONF_DEFINITION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        ResultsTable {
            run,
            direction,
            rows,
            gain,
            definitions,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultRow {
    pub experiment: u32,
    pub commit: String,
    pub metric: Option<f64>,
    pub status: String,
    pub description: String,
    /// The experiment's own change against the best of its time, as its decision measured
    /// it ([`CHANGE_DEFINITION`]; positive = better).
    pub change: Option<f64>,
    /// [`CONF_DEFINITION`].
    pub confidence: Option<f64>,
    /// Why it was decided so (the journal's reason, verbatim).
    #[serde(default)]
    pub reason: String,
    /// Paired rounds of its decision (noisy mode).
    #[serde(default)]
    pub rounds: Option<usize>,
    /// The 95% interval of `change` (noisy mode).
    #[serde(default)]
    pub interval: Option<[f64; 2]>,
    /// The running best after this row in the baseline's terms (the baseline moved by the
    /// chain of the kept experiments' estimates): what the plot's best line follows.
    #[serde(default)]
    pub best_after: Option<f64>,
}
