//! `pause RUN` and `resume RUN`: the run waits between experiments, or goes on.

use super::{find, Registry};
use crate::protocol::{Error, OpResult, Response, RunState};
use crate::run::state::Request;

pub fn handle(reg: &Registry, id: &str, pause: bool) -> OpResult<Response> {
    let h = find(reg, id)?;
    let state = h.state();
    if !state.is_active() {
        return Err(Error::bad_input(format!(
            "run {id} is {}: nothing to {}",
            state.as_str(),
            if pause { "pause" } else { "resume" }
        )));
    }
    let request = if pause {
        Request::Pause
    } else {
        Request::Resume
    };
    h.request(request).map_err(Error::from_anyhow)?;
    reg.global.slots.wake(); // a run waiting for a slot sees it at once
    if !pause && state == RunState::Paused && !h.is_thread_running() {
        return Err(Error::failed(format!(
            "run {id} has no running loop; restart the daemon"
        )));
    }
    Ok(Response::ok(if pause {
        format!("run {id}: pausing after the current experiment")
    } else {
        format!("run {id}: resumed")
    }))
}
