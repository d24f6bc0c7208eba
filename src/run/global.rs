//! What the runs of one daemon share: the state dir, the process-tag root, the slots that
//! cap experiments executing at once, the measurement lock, the reserved cores and each
//! run's executor.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::exec::executor::ExecutorOptions;
use crate::exec::{self, ClusterJob, Executor};
use crate::protocol::{Error, OpResult};
use crate::run::record::{RunPaths, RunRecord};

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
    /// The daemon config's `[notify]`: used by runs whose spec has none.
    pub default_notify: Option<crate::spec::NotifySpec>,
    /// Each run's executor, by run id (see `cluster`).
    executors: Mutex<BTreeMap<String, Arc<dyn Executor>>>,
    /// Who hears of what a user may want to know (`[notify]`): set by the daemon.
    pub listener: Option<Listener>,
}

/// What a run tells its listener: a keep, its end (finished or stopped), a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Keep,
    Finish,
    Fail,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Keep => "keep",
            Notice::Finish => "finish",
            Notice::Fail => "fail",
        }
    }
}

/// Told of each [`Notice`] of a run; must return at once (it runs on the run's thread).
pub type Listener = Arc<dyn Fn(&Global, &Arc<crate::run::RunHandle>, Notice) + Send + Sync>;

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
            default_notify: None,
            executors: Mutex::new(BTreeMap::new()),
            listener: None,
        }
    }

    /// Reserve `n` cores no other run holds, for run `id`.
    pub fn reserve_cores(&self, id: &str, n: usize) -> OpResult<Vec<usize>> {
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
            return Err(Error::bad_input(format!(
                "limits.cpus = {n}, but only {} of the {} cores available to arctl are free{}",
                free.len(),
                all.len(),
                if holders.is_empty() {
                    String::new()
                } else {
                    format!(" (reserved by: {})", holders.join(", "))
                }
            )));
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

    /// Tell the listener (if any) of `notice` of run `h`.
    pub fn tell(&self, h: &Arc<crate::run::RunHandle>, notice: Notice) {
        if let Some(l) = &self.listener {
            l(self, h, notice);
        }
    }

    pub fn run_tag(&self, id: &str) -> String {
        format!("{}/{id}/", self.tag_root)
    }

    /// The executor of a run, created on first use and then shared by its loop, `arctl
    /// merge` and `arctl status`.
    pub fn executor(&self, rec: &RunRecord) -> Arc<dyn Executor> {
        let mut map = self.executors.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(rec.id.clone())
            .or_insert_with(|| {
                exec::executor_for(
                    rec.spec.spec.executor.as_ref(),
                    ExecutorOptions {
                        cpus: rec.spec.spec.limits.cpus,
                        ledger: Some(RunPaths::new(&self.state_dir, &rec.id).dir.join(LEDGER)),
                        name_prefix: self.run_tag(&rec.id),
                    },
                )
            })
            .clone()
    }

    /// The jobs a run's executor has submitted and not seen end (none on this machine).
    pub fn jobs_of(&self, id: &str) -> Vec<ClusterJob> {
        let map = self.executors.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).map(|x| x.jobs()).unwrap_or_default()
    }

    /// Daemon shutdown (after the runs' threads ended): cancel whatever is still submitted.
    pub fn shutdown_executors(&self) {
        let all: Vec<Arc<dyn Executor>> = self
            .executors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for e in all {
            e.shutdown();
        }
    }
}

/// The file in a run's state folder holding the ids of its submitted, unfinished jobs.
pub const LEDGER: &str = "cluster-jobs.json";

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
