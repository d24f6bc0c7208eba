//! `arctl show RUN N`: one experiment from the run's journal, its diff from the repository
//! (a discarded commit stays addressable under its ref until cleanup), and the tails of the
//! outputs its commands left in the run's `output/N/`.

use std::path::Path;

use crate::protocol::{Error, ExperimentView, OpResult, OutputTail};
use crate::run::journal::ExperimentRecord;
use crate::run::RunHandle;

/// The last this many lines of each output are shown.
const TAIL_LINES: usize = 40;
/// At most this many bytes are read from the end of an output file.
const TAIL_BYTES: u64 = 16 * 1024;
/// The diff is cut after this many bytes.
const MAX_DIFF: usize = 64 * 1024;

pub fn show(h: &RunHandle, records: &[ExperimentRecord], n: u32) -> OpResult<ExperimentView> {
    let Some(r) = records.iter().find(|r| r.experiment == n) else {
        let last = records.last().map(|r| r.experiment).unwrap_or(0);
        return Err(Error::bad_input(format!(
            "run {} has no experiment {n}: its experiments are 0 (the baseline) to {last}",
            h.id
        )));
    };
    let rec = h.record();
    let (diff, diff_note) = match diff(&rec.repo, r.commit.as_deref()) {
        Ok(d) => (Some(d), None),
        Err(why) => (None, Some(why)),
    };
    Ok(ExperimentView {
        run: h.id.clone(),
        experiment: n,
        commit: r.commit.clone(),
        status: r.status.as_str().to_string(),
        description: r.description.clone(),
        reason: r.reason.clone(),
        hypothesis: r.hypothesis.clone(),
        metric: r.metric,
        decision: r.decision.clone(),
        fix_attempts: r.fix_attempts,
        cost_usd: r.cost_usd(),
        diff,
        diff_note,
        outputs: outputs(&h.paths.experiment_output(n)),
    })
}

/// The experiment's commit against its parent.
fn diff(repo: &Path, commit: Option<&str>) -> Result<String, String> {
    let c = commit.ok_or("nothing was committed (the proposer changed nothing, or failed)")?;
    let (repo, _) = crate::git::open_repo(repo).map_err(|e| format!("{e:#}"))?;
    let oid = crate::git::parse_oid(c).map_err(|e| format!("{e:#}"))?;
    let parent = match repo.find_commit(oid) {
        Ok(commit) => commit.parent_id(0).map_err(|e| e.message().to_string())?,
        Err(_) => {
            return Err(format!(
                "commit {} is no longer in the repository (removed by `arctl cleanup`)",
                crate::protocol::format::short_commit(c)
            ))
        }
    };
    let wt = crate::git::WorkTree::from_repo(repo);
    wt.diff_text(parent, oid, MAX_DIFF)
        .map_err(|e| format!("{e:#}"))
}

/// The tails of the files in an experiment's output folder: the proposer's first, then the
/// metric's and the guards', by name.
fn outputs(dir: &Path) -> Vec<OutputTail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        (!name.starts_with("proposer"), name)
    });
    files
        .iter()
        .filter_map(|p| {
            let bytes = p.metadata().ok()?.len();
            Some(OutputTail {
                name: p.file_name()?.to_string_lossy().to_string(),
                bytes,
                tail: tail(p).unwrap_or_default(),
            })
        })
        .filter(|o| o.bytes > 0)
        .collect()
}

/// The last [`TAIL_LINES`] lines of a file, read from its end only.
fn tail(path: &Path) -> std::io::Result<String> {
    let text = crate::store::read_tail(path, TAIL_BYTES)?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n"))
}

/// Lines that say an error happened, in the usual tools' words.
const ERROR_WORDS: &[&str] = &[
    "error",
    "Error",
    "ERROR",
    "Traceback",
    "Exception",
    "panicked",
    "FAILED",
    "FAIL:",
    "failed",
    "assert",
    "fatal",
    "No such file",
    "not found",
    "Killed",
];

/// At most this many lines are quoted for one failure.
const QUOTE_LINES: usize = 4;

/// What the failing command of an experiment said: the first of its error output files
/// (the metric's, a guard's, the proposer's) that has something, as its error lines, else its
/// last lines. None: no output says anything.
pub fn failure_lines(dir: &Path) -> Option<(String, Vec<String>)> {
    let mut outs = outputs(dir);
    // The metric's and guards' errors before the proposer's chatter; stderr before stdout.
    outs.sort_by_key(|o| (o.name.starts_with("proposer"), !o.name.ends_with(".err")));
    let o = outs.into_iter().find(|o| !o.tail.trim().is_empty())?;
    let lines: Vec<&str> = o.tail.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| ERROR_WORDS.iter().any(|w| l.contains(w)))
        .collect();
    let chosen = if errors.is_empty() { lines } else { errors };
    let quoted = chosen[chosen.len().saturating_sub(QUOTE_LINES)..]
        .iter()
        .map(|l| l.chars().take(200).collect())
        .collect();
    Some((o.name, quoted))
}
