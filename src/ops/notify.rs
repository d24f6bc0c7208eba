//! `[notify]`: the user's commands for a keep, a run's end and its failure (`on_keep`,
//! `on_finish`, `on_fail`, or the daemon config's defaults). They are the user's own, so
//! they run outside the agent's sandbox, in the main checkout, with the run's facts in
//! their environment and its rendered report in a file; each on its own thread, bounded by
//! its timeout. Their failures are logged and never touch the run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::exec::{self, Cancel, CommandSpec, Executor};
use crate::protocol::format::{format_metric, pct};
use crate::run::record::RunRecord;
use crate::run::{Global, Notice, RunHandle};

/// Notifications running at once, daemon-wide; more are skipped (and logged) rather than
/// piling up threads behind a hanging webhook.
const MAX_RUNNING: usize = 8;
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The daemon's [`crate::run::Listener`]: run the command `notice` asks for, if any.
pub fn dispatch(g: &Global, h: &Arc<RunHandle>, notice: Notice) {
    let rec = h.record();
    let Some(n) = &rec.spec.spec.notify else {
        return;
    };
    let command = match notice {
        Notice::Keep => &n.on_keep,
        Notice::Finish => &n.on_finish,
        Notice::Fail => &n.on_fail,
    };
    let Some(command) = command.clone() else {
        return;
    };
    let event = notice.as_str();
    if RUNNING.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        h.log_line(&format!(
            "notify on_{event}: skipped, {MAX_RUNNING} notifications still running"
        ));
        return;
    }
    let spec = command_spec(g, h, &rec, &command, event, n.timeout.0);
    let h = h.clone();
    let started = std::thread::Builder::new()
        .name(format!("notify-{}", rec.id))
        .spawn(move || {
            run(&h, &spec, event);
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = started {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(run = %rec.id, "notify on_{event}: no thread: {e}");
    }
}

/// The command with the run's facts in its environment (and its report in a file).
fn command_spec(
    g: &Global,
    h: &RunHandle,
    rec: &RunRecord,
    command: &str,
    event: &str,
    timeout: std::time::Duration,
) -> CommandSpec {
    let report = h.paths.dir.join("report.md");
    let records = crate::store::read_json_lines(&h.paths.journal())
        .map(|(r, _)| r)
        .unwrap_or_default();
    let built = super::report::build(rec, &h.paths, &records);
    let text = report_text(&built);
    if let Err(e) = std::fs::write(&report, text) {
        tracing::warn!(run = %rec.id, "writing {}: {e}", report.display());
    }
    let env = vec![
        ("ARCTL_RUN_ID".to_string(), rec.id.clone()),
        ("ARCTL_EVENT".into(), event.to_string()),
        ("ARCTL_STATE".into(), rec.state().as_str().to_string()),
        // The last experiment (for a keep: the kept one).
        (
            "ARCTL_EXPERIMENT".into(),
            rec.next_experiment.saturating_sub(1).to_string(),
        ),
        ("ARCTL_BEST".into(), format_metric(rec.best)),
        ("ARCTL_BASELINE".into(), format_metric(rec.baseline)),
        (
            "ARCTL_CHANGE".into(),
            // As the report says it: same-time comparisons, 0 without a keep.
            built.change.map(pct).unwrap_or_default(),
        ),
        ("ARCTL_REPORT".into(), report.display().to_string()),
    ];
    CommandSpec {
        command: command.to_string(),
        cwd: rec.repo.clone(),
        env,
        stdin: None,
        stdout: h.paths.output(&format!("notify-{event}.out")),
        stderr: h.paths.output(&format!("notify-{event}.err")),
        timeout: Some(timeout),
        limits: exec::Limits::default(),
        tag: format!("{}notify-{event}", g.run_tag(&rec.id)),
        count_instructions: false,
        exclusive: false,
    }
}

fn run(h: &RunHandle, spec: &CommandSpec, event: &str) {
    // Unconfined: while it runs, no run's tree counts as known clean.
    let running = crate::run::clean_marks::unconfined_child();
    let outcome = exec::Local.run(spec, &Cancel::default());
    drop(running);
    match outcome {
        Ok(o) if o.exit.success() => {
            h.log_line(&format!("notify on_{event}: {:?} ran", spec.command))
        }
        Ok(o) => {
            let tail = crate::store::tail_lines(&spec.stderr, 3);
            tracing::warn!(run = %h.id, "notify on_{event} failed: {}", o.exit.describe());
            h.log_line(&format!(
                "notify on_{event}: {:?} failed ({}): {tail}",
                spec.command,
                o.exit.describe()
            ));
        }
        Err(e) => h.log_line(&format!(
            "notify on_{event}: {:?} could not start: {e}",
            spec.command
        )),
    }
}

/// The report as `arctl report` prints it.
fn report_text(r: &crate::protocol::RunReport) -> String {
    crate::text::reports::report(r)
}
