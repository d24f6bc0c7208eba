//! Operations across runs, each the body of one request: status views, the results table,
//! the report, merge and cleanup. They read runs through their handles and journals and
//! change them only through `RunHandle`.

pub mod cleanup;
pub mod merge;
pub mod notify;
pub mod report;
pub mod results;
pub mod show;
pub mod status;

use std::sync::Arc;

use crate::protocol::{Error, OpResult};
use crate::run::record::RunRecord;
use crate::run::{unknown_run, RunHandle};

/// The runs a request names (each once, in the order named), or, when it names none, every
/// run whose record `default` accepts.
pub fn select(
    runs: &[Arc<RunHandle>],
    names: &[String],
    default: impl Fn(&RunRecord) -> bool,
) -> OpResult<Vec<Arc<RunHandle>>> {
    if names.is_empty() {
        return Ok(runs
            .iter()
            .filter(|h| default(&h.live().record))
            .cloned()
            .collect());
    }
    let mut chosen: Vec<Arc<RunHandle>> = Vec::new();
    for name in names {
        let Some(h) = runs.iter().find(|h| h.id == *name) else {
            let known = runs.iter().map(|h| h.id.as_str());
            return Err(Error::bad_input(unknown_run(name, known)));
        };
        if !chosen.iter().any(|c| c.id == h.id) {
            chosen.push(h.clone());
        }
    }
    Ok(chosen)
}
