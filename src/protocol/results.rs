//! `arctl results`: the experiment table as the TSV holds it, plus the decision details
//! from the journal. The stable JSON shape of `results RUN --json`.

use serde::{Deserialize, Serialize};

use crate::spec::Direction;

/// The experiment table as the TSV holds it, plus decision details from the journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultsTable {
    pub run: String,
    pub direction: Direction,
    pub rows: Vec<ResultRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultRow {
    pub experiment: u32,
    pub commit: String,
    pub metric: Option<f64>,
    pub status: String,
    pub description: String,
    /// Relative change of this experiment's metric against the best before it (positive = better).
    pub change: Option<f64>,
    /// Confidence that the change is real (1 - p), when measured in noisy mode.
    pub confidence: Option<f64>,
}
