//! One autoresearch loop: creating it (`setup`), its durable record and the one handle that
//! owns its state while the daemon holds it, its state machine, its thread and the loop's
//! phases (baseline, experiment, conclude), the proposers, the measuring, the journal, and
//! recovery after a restart. What looks across runs (status, results, report, merge,
//! cleanup) is in `ops`.

mod baseline;
mod best_tree;
pub mod budget;
pub(crate) mod clean_marks;
mod conclude;
mod confirm;
mod experiment;
mod global;
mod guard_rails;
mod handle;
pub mod journal;
pub mod measure;
mod noise;
pub mod prepare;
pub mod prompt;
pub mod proposer;
pub mod record;
pub mod recover;
mod rounds;
mod runner;
pub mod setup;
pub mod state;
pub mod thread;
pub mod truth;

pub use global::{Global, Listener, Notice, SlotGuard, Slots, SAFETY_WAKE};
pub use guard_rails::{
    describe as sandbox_description, effective_mode as sandbox_mode, evaluator_for,
    setup_executor_for,
};
pub use handle::{Live, RunHandle};

/// Quick-fix calls an agent gets for a crash of its own change.
pub fn experiment_max_fix_attempts() -> u32 {
    experiment::MAX_FIX_ATTEMPTS
}

/// The message for a run id nobody knows, listing the known ones.
pub fn unknown_run<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    if known.is_empty() {
        format!("no run {name:?} (no runs yet)")
    } else {
        format!("no run {name:?}; runs: {}", known.join(", "))
    }
}
