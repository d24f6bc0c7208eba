//! One autoresearch loop: creating it (`setup`), its durable record and the one handle that
//! owns its state while the daemon holds it, its state machine, its thread and the loop's
//! phases (baseline, experiment, conclude), the proposers, the measuring, the journal, and
//! recovery after a restart. What looks across runs (status, results, report, merge,
//! cleanup) is in `ops`.

mod baseline;
mod best_tree;
pub mod budget;
mod conclude;
mod experiment;
mod global;
mod guard_rails;
mod handle;
pub mod journal;
pub mod measure;
pub mod prompt;
pub mod proposer;
pub mod record;
pub mod recover;
mod runner;
pub mod setup;
pub mod state;
pub mod thread;

pub use global::{Global, SlotGuard, Slots, SAFETY_WAKE};
pub use guard_rails::{
    describe as sandbox_description, effective_mode as sandbox_mode, evaluator_for,
};
pub use handle::{Live, RunHandle};

/// The message for a run id nobody knows, listing the known ones.
pub fn unknown_run<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    if known.is_empty() {
        format!("no run {name:?} (no runs yet)")
    } else {
        format!("no run {name:?}; runs: {}", known.join(", "))
    }
}
