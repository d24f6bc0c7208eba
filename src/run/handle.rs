//! `RunHandle`: the one owner of a run's state while the daemon holds it. The run's thread
//! and the daemon's handlers both read and change the run only through it: the record is
//! written by [`RunHandle::update`] alone (changed under the lock, persisted in the order of
//! the changes), user requests go through [`RunHandle::request`], and the live step,
//! progress and history are set by the run's thread.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::exec::Cancel;
use crate::run::record::{Inflight, RunPaths, RunRecord};
use crate::run::state::{Control, Event, Request, RunState, Step};

/// The run's live state, shared between its thread and the daemon.
pub struct Live {
    pub record: RunRecord,
    pub step: Step,
    pub step_started: Instant,
    /// Progress within the step ("round 3/12", "noise probe 2/5"); cleared with the step.
    pub step_detail: String,
    pub control: Control,
    /// When this daemon started running it (for `active_ms`).
    pub session_started: Option<Instant>,
    /// Best-so-far after each experiment (for the sparkline).
    pub best_history: Vec<f64>,
    /// Peak RSS, CPU ms and wall ms of the last experiment.
    pub last_resources: Option<(u64, u64, u64)>,
}

impl Live {
    /// Time spent running, over all daemon lifetimes, up to now.
    pub fn elapsed_ms(&self) -> u64 {
        self.record.active_ms
            + self
                .session_started
                .map(|s| s.elapsed().as_millis() as u64)
                .unwrap_or(0)
    }
}

pub struct RunHandle {
    pub id: String,
    pub paths: RunPaths,
    live: Mutex<Live>,
    /// Held while `run.json` is written, so writes land in the order of their changes.
    persist: Mutex<()>,
    /// Wakes the run's thread when a request arrives (a paused run waits on it).
    cond: Condvar,
    /// Cancels the command running now (stop --now, shutdown).
    cancel: Mutex<Cancel>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RunHandle {
    /// A handle for a record loaded or created; a stop or pause it was under holds again.
    pub fn new(record: RunRecord, paths: RunPaths, best_history: Vec<f64>) -> RunHandle {
        let control = Control::restored(record.state(), false);
        RunHandle {
            id: record.id.clone(),
            paths,
            live: Mutex::new(Live {
                record,
                step: Step::Idle,
                step_started: Instant::now(),
                step_detail: String::new(),
                control,
                session_started: None,
                best_history,
                last_resources: None,
            }),
            persist: Mutex::new(()),
            cond: Condvar::new(),
            cancel: Mutex::new(Cancel::default()),
            thread: Mutex::new(None),
        }
    }

    /// The live state, locked. Keep the guard short: the run's thread waits for it.
    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the record as it is now.
    pub fn record(&self) -> RunRecord {
        self.live().record.clone()
    }

    pub fn state(&self) -> RunState {
        self.live().record.state()
    }

    /// The one way to change the record: `f` runs under the lock, then the record is
    /// persisted. Returns the record as changed.
    pub fn update(&self, f: impl FnOnce(&mut RunRecord)) -> Result<RunRecord> {
        let _order = self.persist.lock().unwrap_or_else(|e| e.into_inner());
        let rec = {
            let mut l = self.live();
            f(&mut l.record);
            l.record.clone()
        };
        crate::store::save_json(&self.paths.record(), &rec)?;
        Ok(rec)
    }

    /// Experiment `n` is under way, before its side effects: in the record in memory, and in
    /// the `inflight` file, overwritten in place without an fsync (no durable write, no new
    /// file per experiment). Recovery needs neither: it resets the worktree and numbers the
    /// experiments from the journal either way, and the mark only names the interrupted
    /// experiment in a note, which a power loss may cost.
    pub fn mark_inflight(&self, n: u32) -> Result<()> {
        self.update_in_memory(|r| r.inflight = Some(Inflight { experiment: n }));
        let path = self.paths.inflight();
        crate::store::overwrite_in_place(&path, format!("{n:>10}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Change the record now and persist it with the next [`RunHandle::update`] (a keep's
    /// confirmation, a pause, the end of the run): for what recovery rebuilds from the
    /// journal anyway (an experiment's counters, written after its journal line), so an
    /// experiment makes no durable record write: its one durable write is its journal line.
    pub fn update_deferred(&self, f: impl FnOnce(&mut RunRecord)) -> RunRecord {
        let _order = self.persist.lock().unwrap_or_else(|e| e.into_inner());
        let mut l = self.live();
        f(&mut l.record);
        l.record.clone()
    }

    /// Change the record for this daemon's lifetime only, without persisting it: a run
    /// whose recovery failed shows as failed, and the next daemon tries again.
    pub fn update_in_memory(&self, f: impl FnOnce(&mut RunRecord)) {
        f(&mut self.live().record);
    }

    /// Like [`RunHandle::update`] for callers that can only log a failure (merge, cleanup).
    pub fn update_logged(&self, f: impl FnOnce(&mut RunRecord)) {
        if let Err(e) = self.update(f) {
            tracing::error!(run = %self.id, error = %format!("{e:#}"), "saving the run state");
        }
    }

    /// Move the run's state by `event`, persisted.
    pub fn transition(&self, event: Event) -> Result<RunRecord> {
        self.update(|r| r.apply(event))
    }

    /// Apply a user's (or the daemon's) request: set the control, publish what it means for
    /// the state (a stop shows `stopping` at once), interrupt the running command when
    /// asked to, and wake the thread.
    pub fn request(&self, request: Request) -> Result<()> {
        let interrupt = {
            let mut l = self.live();
            l.control.apply(request);
            l.control.interrupts()
        };
        if interrupt {
            self.cancel_current();
        }
        self.cond.notify_all();
        if matches!(request, Request::Stop { .. }) {
            self.transition(Event::StopRequested)?;
        }
        Ok(())
    }

    pub fn control(&self) -> Control {
        self.live().control.clone()
    }

    /// Wait while the run is paused (and not asked to stop or shut down).
    pub fn wait_while_paused(&self) {
        let mut l = self.live();
        l.step = Step::Idle;
        while l.control.pause && !l.control.stop && !l.control.interrupts() {
            l = self
                .cond
                .wait_timeout(l, crate::run::SAFETY_WAKE) // woken by `request`
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The thread is at `step` now (shown by `status` and `watch`; not persisted).
    pub fn set_step(&self, step: Step) {
        let mut l = self.live();
        l.step = step;
        l.step_started = Instant::now();
        l.step_detail.clear();
    }

    /// Show progress within the current step in `status` and `watch`.
    pub fn set_detail(&self, detail: String) {
        self.live().step_detail = detail;
    }

    /// A fresh cancel token for the next command.
    pub fn new_cancel(&self) -> Cancel {
        let c = Cancel::default();
        *self.cancel.lock().unwrap_or_else(|e| e.into_inner()) = c.clone();
        c
    }

    fn cancel_current(&self) {
        self.cancel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
    }

    pub fn set_thread(&self, t: JoinHandle<()>) {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    /// The thread's handle, for joining it (shutdown), or for dropping it to detach the
    /// thread.
    pub fn take_thread(&self) -> Option<JoinHandle<()>> {
        self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn is_thread_running(&self) -> bool {
        self.thread
            .lock()
            .map(|t| t.as_ref().map(|h| !h.is_finished()).unwrap_or(false))
            .unwrap_or(false)
    }

    /// Wake anyone waiting on the run's condition (its thread when paused).
    pub fn notify(&self) {
        self.cond.notify_all();
    }
}

impl RunHandle {
    /// Append a timestamped line to the run's log (in the state dir).
    pub fn log_line(&self, msg: &str) {
        use std::io::Write;
        let line = format!(
            "{} {msg}\n",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        );
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.paths.log())
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
