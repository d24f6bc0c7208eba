//! The experiment log: `journal.jsonl` (one object per experiment, the source of truth) and
//! the seed's TSV (`experiment commit metric status description`), derived from it. A run
//! that ends with a keep also journals its final confirmation (best against baseline,
//! measured paired): a line of status `confirmation`, which the TSV never shows.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::exec::Outcome;
use crate::git::{Change, DiffStat};
use crate::protocol::format::{format_metric, short_commit};
use crate::stats::Evaluation;

pub const TSV_HEADER: &str = "experiment\tcommit\tmetric\tstatus\tdescription";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Baseline,
    Keep,
    Discard,
    Crash,
    InspectorReject,
    /// Not an experiment: the final paired measurement of the best against the baseline.
    Confirmation,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Baseline => "baseline",
            Status::Keep => "keep",
            Status::Discard => "discard",
            Status::Crash => "crash",
            Status::InspectorReject => "inspector-reject",
            Status::Confirmation => "confirmation",
        }
    }

    /// A row of the TSV: the baseline and the experiments (not the confirmation).
    pub fn is_row(self) -> bool {
        self != Status::Confirmation
    }
}

/// One run of a command, as the journal keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRecord {
    pub role: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Time spent waiting for the daemon-wide measurement lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_wait_ms: Option<u64>,
    /// Which tree was measured: "candidate" or "best".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    /// Processes of other commands frozen while this exclusive measurement ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub froze: Option<usize>,
}

/// One experiment: the line of `journal.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentRecord {
    pub experiment: u32,
    /// Full commit id (None when nothing was committed).
    #[serde(default)]
    pub commit: Option<String>,
    /// The number written to the TSV (the candidate's estimate).
    #[serde(default)]
    pub metric: Option<f64>,
    pub status: Status,
    pub description: String,
    /// Why the decision was made, in plain words.
    pub reason: String,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    #[serde(default)]
    pub proposer: Option<CommandRecord>,
    #[serde(default)]
    pub measurements: Vec<CommandRecord>,
    #[serde(default)]
    pub guards: Vec<CommandRecord>,
    #[serde(default)]
    pub decision: Option<Evaluation>,
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub diff: Option<DiffStat>,
    /// The proposer's structured proposal (ARCTL_PROPOSAL_FILE), if any.
    #[serde(default)]
    pub hypothesis: Option<serde_json::Value>,
    /// Built-in proposers: what was tried (patch file, parameter values).
    #[serde(default)]
    pub proposal_key: Option<String>,
    #[serde(default)]
    pub fix_attempts: u32,
    /// How the current best was measured beside the candidate (noisy mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_tree: Option<String>,
    /// Peak RSS, CPU and wall time of the experiment's commands.
    #[serde(default)]
    pub peak_rss: u64,
    #[serde(default)]
    pub cpu_ms: u64,
    #[serde(default)]
    pub wall_ms: u64,
}

impl ExperimentRecord {
    /// An experiment with nothing recorded yet.
    pub fn new(experiment: u32, status: Status, started_at_ms: u64) -> ExperimentRecord {
        ExperimentRecord {
            experiment,
            commit: None,
            metric: None,
            status,
            description: String::new(),
            reason: String::new(),
            started_at_ms,
            ended_at_ms: 0,
            proposer: None,
            measurements: vec![],
            guards: vec![],
            decision: None,
            changes: vec![],
            diff: None,
            hypothesis: None,
            proposal_key: None,
            fix_attempts: 0,
            best_tree: None,
            peak_rss: 0,
            cpu_ms: 0,
            wall_ms: 0,
        }
    }

    /// What the proposer reported spending on this experiment (`cost_usd` in its proposal
    /// file), in US dollars.
    pub fn cost_usd(&self) -> Option<f64> {
        self.hypothesis
            .as_ref()?
            .get("cost_usd")?
            .as_f64()
            .filter(|c| c.is_finite() && *c >= 0.0)
    }

    /// Sum up the resources of the experiment's commands: peak RSS, CPU and wall time.
    pub fn tally_resources(&mut self) {
        let all = self
            .proposer
            .iter()
            .chain(&self.measurements)
            .chain(&self.guards);
        self.peak_rss = all.clone().map(|r| r.outcome.peak_rss).max().unwrap_or(0);
        self.cpu_ms = all.clone().map(|r| r.outcome.cpu_ms).sum();
        self.wall_ms = all.map(|r| r.outcome.wall_ms).sum();
    }

    pub fn tsv_row(&self) -> String {
        let commit = self.commit.as_deref().map(short_commit).unwrap_or("-");
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.experiment,
            commit,
            format_metric(self.metric),
            self.status.as_str(),
            clean_description(&self.description)
        )
    }
}

/// One line, no tabs: the TSV's description column.
pub fn clean_description(s: &str) -> String {
    let one: String = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .map(|c| if c == '\t' || c.is_control() { ' ' } else { c })
        .collect();
    let one = one.trim();
    if one.chars().count() > 200 {
        one.chars().take(199).collect::<String>() + "…"
    } else {
        one.to_string()
    }
}

/// The whole TSV for these records (a confirmation is no row).
pub fn render_tsv(records: &[ExperimentRecord]) -> String {
    let mut out = String::from(TSV_HEADER);
    out.push('\n');
    for r in records.iter().filter(|r| r.status.is_row()) {
        out.push_str(&r.tsv_row());
        out.push('\n');
    }
    out
}

/// The worktree's copy of the TSV, brought up to `records` (the new one last), without
/// fsync. The copy is within the agent's reach: when it is exactly as arctl last left it
/// (`mark`: same inode, size and change time, one link, not a symlink) the new row is
/// appended; otherwise it is rewritten whole from the journal (a new file renamed over it),
/// so a TSV the agent edited, replaced or deleted never loses a recorded row. Returns the
/// copy's mark after the write.
pub fn update_tsv_copy(
    path: &Path,
    mark: Option<crate::store::FileMark>,
    records: &[ExperimentRecord],
) -> std::io::Result<crate::store::FileMark> {
    use crate::store::FileMark;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let intact =
        |m: &std::fs::Metadata| m.is_file() && m.nlink() == 1 && Some(FileMark::from(m)) == mark;
    if let (Some(_), Some(last)) = (mark, records.last()) {
        let open = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path);
        if let Ok(mut f) = open {
            if f.metadata().is_ok_and(|m| intact(&m)) {
                if last.status.is_row() {
                    f.write_all(format!("{}\n", last.tsv_row()).as_bytes())?;
                }
                return f.metadata().map(|m| FileMark::from(&m));
            }
        }
    }
    crate::store::write_replace(path, render_tsv(records).as_bytes())?;
    std::fs::symlink_metadata(path).map(|m| FileMark::from(&m))
}

/// Append one row to a TSV file (writing the header first if the file is new), without
/// fsync: recovery rewrites the TSVs from the journal.
pub fn append_tsv(path: &Path, record: &ExperimentRecord) -> Result<()> {
    let mut text = String::new();
    if !path.exists() || std::fs::metadata(path)?.len() == 0 {
        text.push_str(TSV_HEADER);
        text.push('\n');
    }
    text.push_str(&record.tsv_row());
    text.push('\n');
    crate::store::append_plain(path, text.as_bytes())
}

/// Parse a TSV's rows (header skipped).
pub fn parse_tsv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u32, status: Status, metric: Option<f64>, desc: &str) -> ExperimentRecord {
        ExperimentRecord {
            commit: Some("a1b2c3d4e5f6".into()),
            metric,
            description: desc.into(),
            ..ExperimentRecord::new(n, status, 0)
        }
    }

    #[test]
    fn rows_in_the_seed_format() {
        let r = rec(
            3,
            Status::InspectorReject,
            Some(128.9),
            "inline\tdict\nsecond line",
        );
        assert_eq!(
            r.tsv_row(),
            "3\ta1b2c3d\t128.9\tinspector-reject\tinline dict"
        );
        let c = rec(4, Status::Crash, None, "add numba jit");
        assert_eq!(c.tsv_row(), "4\ta1b2c3d\t0.0\tcrash\tadd numba jit");
        let confirm = rec(4, Status::Confirmation, Some(120.0), "final confirmation");
        let all = render_tsv(&[r, c, confirm]);
        assert!(all.starts_with("experiment\tcommit\tmetric\tstatus\tdescription\n"));
        assert_eq!(
            parse_tsv(&all).len(),
            2,
            "the confirmation is no row: {all}"
        );
    }

    #[test]
    fn the_worktree_tsv_is_appended_while_intact_and_rewritten_when_touched() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv");
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "mine\n").unwrap();
        let mut records = vec![rec(0, Status::Baseline, Some(1.0), "baseline")];
        let mut mark = None;
        let next = |records: &mut Vec<ExperimentRecord>, mark: &mut Option<_>| {
            let n = records.len() as u32;
            records.push(rec(n, Status::Discard, Some(2.0), &format!("idea {n}")));
            *mark = Some(update_tsv_copy(&path, *mark, records).unwrap());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), render_tsv(records));
        };
        next(&mut records, &mut mark);
        let ino = std::fs::metadata(&path).unwrap().ino();
        next(&mut records, &mut mark);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "appended in place"
        );
        // Same size, other bytes: rewritten from the records.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("idea", "IDEA");
        std::fs::write(&path, text).unwrap();
        next(&mut records, &mut mark);
        // A symlink or a hard link in its place: replaced, the other file untouched.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        next(&mut records, &mut mark);
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&outside, &path).unwrap();
        next(&mut records, &mut mark);
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "mine\n");
        // Deleted: written again.
        std::fs::remove_file(&path).unwrap();
        next(&mut records, &mut mark);
    }
}
