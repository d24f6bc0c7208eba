//! Bringing a run back after a daemon restart (or crash): kill what the old daemon left
//! running, make the TSV copies agree with the journal, apply a journal line the record
//! missed, and put the worktree back at the last kept commit. The journal is the truth.

use anyhow::Result;

use crate::exec;
use crate::git::{self, HeadState, WorkTree};
use crate::run::journal::{self, ExperimentRecord, Status};
use crate::run::record::RunRecord;
use crate::run::{Global, RunHandle};
use crate::stats;
use crate::store;

/// Recover run `h`; returns notes for its log.
pub fn recover(h: &RunHandle, g: &Global) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let killed = exec::kill_tagged(&g.run_tag(&h.id));
    if killed > 0 {
        notes.push(format!(
            "killed {killed} process(es) left by the previous daemon"
        ));
    }
    // Jobs on a cluster: by the ids recorded and the names given.
    let executor = g.executor(&h.record());
    match executor.recover() {
        Ok(n) => notes.extend(n),
        Err(e) => notes.push(format!(
            "could not cancel the jobs the previous daemon left on {}: {e}",
            executor.describe()
        )),
    }
    let records = read_journal(h, &mut notes)?;
    let mut rec = h.record();
    apply_missing(&mut rec, &records, &mut notes);
    let tsv = journal::render_tsv(&records);
    for path in [h.paths.tsv(), rec.worktree_tsv()] {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != tsv && rec.worktree.exists() {
            store::write_atomic(&path, tsv.as_bytes())?;
            notes.push(format!("rewrote {} from the journal", path.display()));
        }
    }
    // Under way when the daemon stopped: the record's mark (the baseline's, durable) or the
    // experiments' (`inflight`, in place), unless its journal line made it.
    let marked = read_mark(&h.paths.inflight());
    let inflight = rec.inflight.take().map(|i| i.experiment).max(marked);
    if let Some(n) = inflight.filter(|n| *n >= rec.next_experiment) {
        if rec.state().is_active() {
            notes.push(format!("experiment {n} was interrupted and will run again"));
        }
    }
    if rec.state().is_active() && rec.worktree.exists() {
        reset_worktree(&rec, &mut notes)?;
    }
    rec.recovered_at_ms = Some(store::now_ms());
    h.update(|r| *r = rec)?;
    h.live().best_history = best_history(&records, rec_direction(h));
    Ok(notes)
}

/// The experiment number in an `inflight` mark (its first 32 bytes), if it holds one.
fn read_mark(path: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

/// The journal's records; a torn last line (a crash mid-write) is dropped for good.
fn read_journal(h: &RunHandle, notes: &mut Vec<String>) -> Result<Vec<ExperimentRecord>> {
    let (records, torn) = store::read_json_lines::<ExperimentRecord>(&h.paths.journal())?;
    if torn {
        notes.push("dropped a torn last journal line".into());
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        store::write_atomic(&h.paths.journal(), text.as_bytes())?;
    }
    Ok(records)
}

/// Journal lines written but not yet reflected in the record (a crash between the two):
/// apply them.
fn apply_missing(rec: &mut RunRecord, records: &[ExperimentRecord], notes: &mut Vec<String>) {
    let first_missing = rec.next_experiment;
    // The gain follows the journal whatever the record missed.
    rec.gain = crate::run::truth::gain(records, rec.spec.spec.metric.direction);
    for r in records
        .iter()
        .filter(|r| r.experiment >= first_missing && r.status.is_row())
    {
        rec.next_experiment = r.experiment + 1;
        rec.last_status = Some(r.status.as_str().to_string());
        rec.counts.add(r.status);
        rec.add_cost(r.cost_usd());
        match r.status {
            Status::Baseline => {
                rec.baseline = r.metric;
                rec.best = r.metric;
                rec.baseline_duration_ms = r.measurements.iter().map(|m| m.outcome.wall_ms).max();
                let values: Vec<f64> = r.measurements.iter().filter_map(|m| m.value).collect();
                rec.mode = Some(stats::probe_mode(&values));
            }
            Status::Keep => {
                rec.best = r.metric;
                if let Some(c) = &r.commit {
                    rec.best_commit = c.clone();
                }
            }
            _ => {}
        }
        notes.push(format!(
            "applied journal entry {} missing from the run state",
            r.experiment
        ));
    }
}

fn rec_direction(h: &RunHandle) -> crate::spec::Direction {
    h.live().record.spec.spec.metric.direction
}

/// Stale git locks removed, and the worktree at the last kept commit with nothing else in
/// it.
fn reset_worktree(rec: &RunRecord, notes: &mut Vec<String>) -> Result<()> {
    let removed = git::remove_stale_locks(&rec.worktree, &rec.common_dir, &rec.id);
    if !removed.is_empty() {
        notes.push(format!("removed stale git locks: {}", removed.join(", ")));
    }
    let wt = WorkTree::open(&rec.worktree)?;
    let best = git::parse_oid(&rec.best_commit)?;
    let at_best = matches!(wt.head_state(), HeadState::Branch { ref name, oid } if *name == rec.branch && oid == best);
    if !at_best || !wt.is_clean()? {
        wt.restore(&rec.branch, best)?;
        notes.push(format!(
            "worktree reset to the last kept commit {}",
            git::short(best)
        ));
    }
    Ok(())
}

/// Best-so-far after each experiment, from the journal, in the baseline's terms (the chain
/// of the kept experiments' paired estimates, see [`crate::run::truth::history`]).
pub fn best_history(records: &[ExperimentRecord], direction: crate::spec::Direction) -> Vec<f64> {
    crate::run::truth::history(records, direction)
}
