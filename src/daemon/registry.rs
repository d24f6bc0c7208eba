//! The registry of runs: loading them from the state dir at start (with recovery), adding
//! new ones, and stopping them all at shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::config::DaemonConfig;
use crate::run::journal::ExperimentRecord;
use crate::run::record::{RunPaths, RunRecord};
use crate::run::state::{Event, Request};
use crate::run::{recover, setup, thread, Global, RunHandle};
use crate::store;

pub struct Registry {
    pub config: DaemonConfig,
    pub global: Arc<Global>,
    runs: Mutex<BTreeMap<String, Arc<RunHandle>>>,
    /// Unreadable state files, moved aside; shown by `arctl status`.
    problems: Mutex<Vec<String>>,
    shutdown: Notify,
    shutdown_flag: std::sync::atomic::AtomicBool,
    /// Held while a run is created: one creation at a time (the id and scope checks see
    /// every other run), without holding `runs` across a checkout that can take seconds.
    pub creating: Mutex<()>,
}

impl Registry {
    pub fn new(config: DaemonConfig) -> Registry {
        let mut global = Global::new(config.state_dir.clone(), config.settings.max_parallel);
        global.default_executor = config.settings.executor.clone();
        global.default_notify = config.settings.notify.clone();
        global.listener = Some(Arc::new(crate::ops::notify::dispatch));
        let global = Arc::new(global);
        Registry {
            config,
            global,
            runs: Mutex::new(BTreeMap::new()),
            problems: Mutex::new(Vec::new()),
            shutdown: Notify::new(),
            shutdown_flag: Default::default(),
            creating: Mutex::new(()),
        }
    }

    pub fn runs(&self) -> MutexGuard<'_, BTreeMap<String, Arc<RunHandle>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<RunHandle>> {
        self.runs().get(id).cloned()
    }

    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn problem(&self, msg: String) {
        tracing::error!("{msg}");
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
    }

    pub fn request_shutdown(&self) {
        self.shutdown_flag
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shutdown.notify_waiters();
    }

    /// True once a shutdown was requested (long blocking work checks it to give up).
    pub fn shutting_down(&self) -> bool {
        self.shutdown_flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub async fn shutdown_requested(&self) {
        loop {
            let notified = self.shutdown.notified();
            if self.shutdown_flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Load every run in the state dir; recover and restart the active ones.
    pub fn load_all(&self) {
        let dir = self.config.state_dir.join("runs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        ids.sort();
        for id in ids {
            if id.starts_with('.') {
                // A run whose creation was interrupted: nothing of it was handed out.
                setup::undo_interrupted(&dir.join(&id));
                continue;
            }
            let paths = RunPaths::new(&self.config.state_dir, &id);
            let record: RunRecord = match store::load_json(&paths.record()) {
                Ok(r) => r,
                Err(e) if e.downcast_ref::<store::SchemaTooNew>().is_some() => {
                    self.problem(format!("run {id}: {e:#}; left as it is and not loaded"));
                    continue;
                }
                Err(e) => {
                    let aside = store::quarantine(&paths.record())
                        .map(|p| format!("moved aside to {}", p.display()))
                        .unwrap_or_else(|e2| format!("could not move it aside: {e2}"));
                    self.problem(format!("run {id}: unreadable state ({e:#}); {aside}"));
                    continue;
                }
            };
            if let Some(note) = quarantine_foreign_lines(&paths.journal()) {
                self.problem(format!("run {id}: {note}"));
            }
            let records: Vec<ExperimentRecord> = match store::read_json_lines(&paths.journal()) {
                Ok((r, _)) => r,
                Err(e) => {
                    let aside = store::quarantine(&paths.journal())
                        .map(|p| format!("moved aside to {}", p.display()))
                        .unwrap_or_else(|e2| format!("could not move it aside: {e2}"));
                    self.problem(format!(
                        "run {id}: unreadable journal ({e:#}); {aside}; the run is not resumed"
                    ));
                    continue;
                }
            };
            let active = record.state().is_active();
            let history = recover::best_history(&records, record.spec.spec.metric.direction);
            let mut record = record;
            // Older records have no gain; the journal has what it is made of.
            if record.gain.is_none() {
                record.gain = arctl_gain(&records, &record);
            }
            let handle = Arc::new(RunHandle::new(record, paths, history));
            if active {
                self.recover(&id, &handle);
            }
            if handle.state().is_active() {
                if !self.config.settings.resume {
                    let _ = handle.request(Request::Pause);
                }
                thread::spawn(handle.clone(), self.global.clone());
            }
            self.runs().insert(id, handle);
        }
    }

    /// Recover a run that was active when the last daemon ended; a run that cannot be
    /// recovered shows as failed until the next start.
    fn recover(&self, id: &str, handle: &RunHandle) {
        match recover::recover(handle, &self.global) {
            Ok(notes) => {
                for n in &notes {
                    tracing::info!(run = %id, "recovery: {n}");
                    handle.log_line(&format!("recovery: {n}"));
                }
            }
            Err(e) => {
                self.problem(format!("run {id}: recovery failed: {e:#}"));
                // Not persisted: the next daemon tries the recovery again.
                handle.update_in_memory(|r| {
                    r.apply(Event::Failed);
                    r.error = Some(format!("recovery failed: {e:#}"));
                });
            }
        }
    }

    /// Interrupt every run (revert the experiment under way) and wait for their threads.
    pub fn shutdown_all(&self) {
        // A run being created is registered before this looks.
        let _creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let runs: Vec<Arc<RunHandle>> = self.runs().values().cloned().collect();
        for r in &runs {
            let _ = r.request(Request::Shutdown);
        }
        self.global.slots.wake();
        for r in &runs {
            if let Some(t) = r.take_thread() {
                let _ = t.join();
            }
        }
        // Nothing stays queued or running on a cluster.
        self.global.shutdown_executors();
    }
}

/// Lines of a run's journal that no daemon wrote: unreadable ones, and readable ones out of
/// sequence (an experiment number not above the one before, e.g. a copy of a real row).
/// They go to the journal's quarantine file, alone; every real row stays. A torn last line
/// (a crash mid-append) is left for recovery. Returns a note when lines were moved.
fn quarantine_foreign_lines(journal: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(journal).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let (mut keep, mut foreign) = (String::new(), Vec::new());
    let mut last: Option<u32> = None;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let torn = i + 1 == lines.len() && !complete;
        match serde_json::from_str::<ExperimentRecord>(line) {
            // A run's final confirmation follows its last experiment under its number.
            Ok(r)
                if last.is_none_or(|l| r.experiment > l)
                    || (r.status == crate::run::journal::Status::Confirmation
                        && last == Some(r.experiment)) =>
            {
                last = Some(r.experiment);
                keep.push_str(line);
                keep.push('\n');
            }
            Err(_) if torn => keep.push_str(line),
            _ => foreign.push(line.to_string()),
        }
    }
    if foreign.is_empty() {
        return None;
    }
    let moved = store::quarantine_lines(journal, &foreign)
        .and_then(|()| store::write_atomic(journal, keep.as_bytes()).map_err(Into::into));
    Some(match moved {
        Ok(()) => format!(
            "{} journal line(s) no daemon wrote moved to {}; every other row kept",
            foreign.len(),
            store::quarantine_path(journal).display()
        ),
        Err(e) => format!("journal lines no daemon wrote could not be moved aside: {e:#}"),
    })
}

/// The gain of a run loaded from disk, from its journal.
fn arctl_gain(
    records: &[crate::run::journal::ExperimentRecord],
    record: &crate::run::record::RunRecord,
) -> Option<crate::protocol::GainEstimate> {
    crate::run::truth::gain(records, record.spec.spec.metric.direction)
}
