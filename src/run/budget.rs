//! When a run's budget is spent: its experiment count, its running time, a plateau of
//! experiments without a keep (`patience`), or the agent's reported cost (`max_cost`).
//! Pure: the loop hands in what it knows.

use crate::protocol::format::count;
use crate::run::journal::{ExperimentRecord, Status};
use crate::spec::BudgetSpec;

/// Where a run stands against its budget.
pub struct Spent<'a> {
    pub budget: &'a BudgetSpec,
    /// The next experiment's number (1 after the baseline).
    pub next_experiment: u32,
    /// Running time over all daemon lifetimes.
    pub elapsed_ms: u64,
    pub records: &'a [ExperimentRecord],
}

impl Spent<'_> {
    /// Why the run must end now, if it must.
    pub fn reason(&self) -> Option<String> {
        let b = self.budget;
        if let Some(max) = b.max_experiments {
            if self.next_experiment > max {
                return Some(format!(
                    "budget reached: {}",
                    count(max as usize, "experiment")
                ));
            }
        }
        if let Some(w) = b.max_wall {
            if self.elapsed_ms >= w.0.as_millis() as u64 {
                return Some(format!(
                    "budget reached: max_wall {}",
                    crate::spec::format_duration(w.0)
                ));
            }
        }
        if let Some(p) = b.patience {
            let dry = without_keep(self.records);
            if dry >= p {
                return Some(format!(
                    "plateau: {} in a row without a keep (patience {p})",
                    count(dry as usize, "experiment")
                ));
            }
        }
        if let Some(max) = b.max_cost {
            let spent = total_cost(self.records);
            if spent >= max {
                return Some(format!(
                    "budget reached: ${spent:.2} of max_cost ${max:.2} spent"
                ));
            }
        }
        None
    }
}

/// Experiments since the last keep (or since the baseline).
pub fn without_keep(records: &[ExperimentRecord]) -> u32 {
    records
        .iter()
        .rev()
        .take_while(|r| !matches!(r.status, Status::Keep | Status::Baseline))
        .count() as u32
}

/// What the agent reported spending, over the run (US dollars).
pub fn total_cost(records: &[ExperimentRecord]) -> f64 {
    records.iter().filter_map(ExperimentRecord::cost_usd).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u32, status: Status, cost: Option<f64>) -> ExperimentRecord {
        ExperimentRecord {
            hypothesis: cost.map(|c| serde_json::json!({ "cost_usd": c })),
            ..ExperimentRecord::new(n, status, 0)
        }
    }

    #[test]
    fn patience_counts_experiments_since_the_last_keep() {
        let budget = BudgetSpec {
            patience: Some(2),
            ..BudgetSpec::default()
        };
        let mut records = vec![rec(0, Status::Baseline, None), rec(1, Status::Keep, None)];
        let spent = |records: &[ExperimentRecord]| {
            Spent {
                budget: &budget,
                next_experiment: records.len() as u32,
                elapsed_ms: 0,
                records,
            }
            .reason()
        };
        assert_eq!(spent(&records), None);
        records.push(rec(2, Status::Crash, None));
        assert_eq!(spent(&records), None);
        records.push(rec(3, Status::Discard, None));
        let why = spent(&records).unwrap();
        assert!(
            why.contains("2 experiments in a row without a keep"),
            "{why}"
        );
    }

    #[test]
    fn max_cost_adds_up_the_reported_usage() {
        let budget = BudgetSpec {
            max_cost: Some(1.0),
            ..BudgetSpec::default()
        };
        let records: Vec<_> = (1..=3)
            .map(|n| rec(n, Status::Discard, Some(0.4)))
            .collect();
        let spent = |n: usize| {
            Spent {
                budget: &budget,
                next_experiment: n as u32 + 1,
                elapsed_ms: 0,
                records: &records[..n],
            }
            .reason()
        };
        assert_eq!(spent(2), None);
        assert!(spent(3).unwrap().contains("$1.20 of max_cost $1.00"));
        assert!((total_cost(&records) - 1.2).abs() < 1e-9);
    }
}
