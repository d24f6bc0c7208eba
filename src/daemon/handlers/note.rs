//! `note RUN "text"` / `note RUN --clear`: the user's words for the agent, added to every
//! later prompt of the run (kept in its record, so they survive a restart).

use super::{find, Registry};
use crate::protocol::{Error, OpResult, Response};

/// A note is a few sentences: longer is refused rather than put in every prompt.
const MAX_NOTE: usize = 4096;

pub fn handle(reg: &Registry, id: &str, text: Option<String>) -> OpResult<Response> {
    let h = find(reg, id)?;
    let Some(text) = text else {
        let n = h.record().notes.len();
        h.update(|r| r.notes.clear()).map_err(Error::from_anyhow)?;
        h.log_line(&format!("notes cleared ({n})"));
        return Ok(Response::ok(format!("run {id}: {n} note(s) cleared")));
    };
    let text = text.trim().to_string();
    if text.is_empty() || text.len() > MAX_NOTE {
        return Err(Error::bad_input(format!(
            "a note is 1 to {MAX_NOTE} bytes of text, not {}",
            text.len()
        )));
    }
    if !h.state().is_active() {
        return Err(Error::bad_input(format!(
            "run {id} is {}: no later prompt will read a note",
            h.state().as_str()
        )));
    }
    let n = h
        .update(|r| r.notes.push(text.clone()))
        .map_err(Error::from_anyhow)?
        .notes
        .len();
    h.log_line(&format!("note {n}: {text}"));
    Ok(Response::ok(format!(
        "run {id}: note {n} added; the agent reads it from its next prompt on"
    )))
}
