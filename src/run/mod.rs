//! One autoresearch loop: its durable record, its thread, and the controls the daemon
//! holds to steer it.

pub mod cleanup;
pub mod cluster;
pub mod extract;
pub mod journal;
pub mod measure;
pub mod merge;
pub mod prompt;
pub mod proposer;
pub mod record;
pub mod report;
pub mod runner;
pub mod setup;
pub mod status;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::exec::Cancel;
use record::{RunPaths, RunRecord, RunState, Step};

/// The message for a run id nobody knows, listing the known ones.
pub fn unknown_run<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    if known.is_empty() {
        format!("no run {name:?} (no runs yet)")
    } else {
        format!("no run {name:?}; runs: {}", known.join(", "))
    }
}

/// What runs share across the daemon.
pub struct Global {
    pub state_dir: PathBuf,
    /// Prefix of every ARCTL_TAG this daemon's state dir gives its children, so a restarted
    /// daemon can find (and kill) what an old one left behind.
    pub tag_root: String,
    /// Experiments executing at once.
    pub slots: Slots,
    /// Held during timed measurements of runs with `measure = "exclusive"`.
    pub measure_lock: Mutex<()>,
    /// Cores reserved by runs with `limits.cpus`, by run id: each run gets its own.
    cores: Mutex<BTreeMap<String, Vec<usize>>>,
    /// The daemon config's `[executor]`: used by runs whose spec has none.
    pub default_executor: Option<crate::spec::ExecutorSpec>,
    /// Each run's executor, by run id (see `cluster`).
    executors: Mutex<BTreeMap<String, std::sync::Arc<dyn crate::exec::Executor>>>,
}

impl Global {
    pub fn new(state_dir: PathBuf, max_parallel: usize) -> Global {
        let tag_root = format!(
            "arctl-{:016x}",
            fnv1a(state_dir.to_string_lossy().as_bytes())
        );
        Global {
            state_dir,
            tag_root,
            slots: Slots::new(max_parallel),
            measure_lock: Mutex::new(()),
            cores: Mutex::new(BTreeMap::new()),
            default_executor: None,
            executors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reserve `n` cores no other run holds, for run `id`.
    pub fn reserve_cores(&self, id: &str, n: usize) -> Result<Vec<usize>, String> {
        let mut cores = self.cores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(have) = cores.get(id) {
            return Ok(have.clone());
        }
        let all = crate::exec::available_cpus();
        let taken: Vec<usize> = cores.values().flatten().copied().collect();
        let free: Vec<usize> = all.iter().copied().filter(|c| !taken.contains(c)).collect();
        if free.len() < n {
            let holders: Vec<String> = cores
                .iter()
                .map(|(k, v)| format!("{k} ({})", v.len()))
                .collect();
            return Err(format!(
                "limits.cpus = {n}, but only {} of the {} cores available to arctl are free{}",
                free.len(),
                all.len(),
                if holders.is_empty() {
                    String::new()
                } else {
                    format!(" (reserved by: {})", holders.join(", "))
                }
            ));
        }
        let mine: Vec<usize> = free.into_iter().take(n).collect();
        cores.insert(id.to_string(), mine.clone());
        Ok(mine)
    }

    pub fn release_cores(&self, id: &str) {
        self.cores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    pub fn cores_of(&self, id: &str) -> Option<Vec<usize>> {
        self.cores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn run_tag(&self, id: &str) -> String {
        format!("{}/{id}/", self.tag_root)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A counting semaphore that serves waiters in arrival order.
pub struct Slots {
    inner: Mutex<(usize, VecDeque<u64>, u64)>,
    cond: Condvar,
}

pub struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        self.0.cond.notify_all();
    }
}

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            inner: Mutex::new((n.max(1), VecDeque::new(), 0)),
            cond: Condvar::new(),
        }
    }

    /// Wait for a slot; gives up (None) as soon as `abort()` says so.
    pub fn acquire(&self, abort: impl Fn() -> bool) -> Option<SlotGuard<'_>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = g.2;
        g.2 += 1;
        g.1.push_back(ticket);
        loop {
            if g.0 > 0 && g.1.front() == Some(&ticket) {
                g.0 -= 1;
                g.1.pop_front();
                self.cond.notify_all();
                return Some(SlotGuard(self));
            }
            if abort() {
                g.1.retain(|t| *t != ticket);
                self.cond.notify_all();
                return None;
            }
            // Woken by a released slot or by `wake` (a control change): no polling.
            g = self
                .cond
                .wait_timeout(g, SAFETY_WAKE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wake every waiter to re-check its `abort()`: call after changing a run's controls
    /// (stop, pause, shutdown). The lock makes the wake-up impossible to miss: a waiter
    /// checks `abort()` and starts waiting under it.
    pub fn wake(&self) {
        let _g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.cond.notify_all();
    }
}

/// How long an idle waiter (a paused run, a run waiting for a slot) sleeps when nothing
/// wakes it. Only a safety net: control changes and released slots wake the waiters, so an
/// idle daemon does not poll (issue 9: no busy waiting).
pub const SAFETY_WAKE: Duration = Duration::from_secs(30);

/// Requests from the user, read by the run's thread between steps.
#[derive(Debug, Default, Clone)]
pub struct Control {
    pub stop: bool,
    pub stop_now: bool,
    pub pause: bool,
    /// The daemon is going down: interrupt, revert, leave the run resumable.
    pub shutdown: bool,
}

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
    pub last_resources: Option<(u64, u64, u64)>,
}

pub struct RunHandle {
    pub id: String,
    pub paths: RunPaths,
    live: Mutex<Live>,
    pub cond: Condvar,
    /// Cancels the command running now (stop --now, shutdown).
    cancel: Mutex<Cancel>,
    pub thread: Mutex<Option<JoinHandle<()>>>,
}

impl RunHandle {
    pub fn new(record: RunRecord, paths: RunPaths, best_history: Vec<f64>) -> RunHandle {
        RunHandle {
            id: record.id.clone(),
            paths,
            live: Mutex::new(Live {
                record,
                step: Step::Idle,
                step_started: Instant::now(),
                step_detail: String::new(),
                control: Control::default(),
                session_started: None,
                best_history,
                last_resources: None,
            }),
            cond: Condvar::new(),
            cancel: Mutex::new(Cancel::default()),
            thread: Mutex::new(None),
        }
    }

    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
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

    pub fn cancel_current(&self) {
        self.cancel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
    }

    /// Apply a user request and wake the thread.
    pub fn control(&self, f: impl FnOnce(&mut Control, RunState)) {
        let mut l = self.live();
        let state = l.record.state;
        f(&mut l.control, state);
        let interrupt = l.control.stop_now || l.control.shutdown;
        drop(l);
        if interrupt {
            self.cancel_current();
        }
        self.cond.notify_all();
    }

    /// Change the record from outside the run's thread (merge, cleanup) and persist it.
    pub fn update_record(&self, f: impl FnOnce(&mut RunRecord)) {
        let rec = {
            let mut l = self.live();
            f(&mut l.record);
            l.record.clone()
        };
        if let Err(e) = crate::store::save_json(&self.paths.record(), &rec) {
            tracing::error!(run = %self.id, error = %format!("{e:#}"), "saving the run state");
        }
    }

    pub fn is_thread_running(&self) -> bool {
        self.thread
            .lock()
            .map(|t| t.as_ref().map(|h| !h.is_finished()).unwrap_or(false))
            .unwrap_or(false)
    }

    pub fn summary(&self) -> status::RunSummary {
        let l = self.live();
        let elapsed = l.record.active_ms
            + l.session_started
                .map(|s| s.elapsed().as_millis() as u64)
                .unwrap_or(0);
        let active = l.record.state.is_active();
        let step = if active { l.step.as_str() } else { "-" };
        let mut summary = status::summarize(
            &l.record,
            step,
            l.step_started.elapsed().as_millis() as u64,
            elapsed,
            status::sparkline(&l.best_history),
        );
        if active && !l.step_detail.is_empty() {
            summary.step_detail = Some(l.step_detail.clone());
        }
        summary
    }
}
