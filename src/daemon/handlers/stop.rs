//! `stop RUN [--now]`: the run finishes (or kills and reverts) its current experiment,
//! then stops. The run shows `stopping` from this request on.

use super::{find, Registry};
use crate::protocol::{Error, OpResult, Response};
use crate::run::state::Request;

pub fn handle(reg: &Registry, id: &str, now: bool) -> OpResult<Response> {
    let h = find(reg, id)?;
    let state = h.state();
    if !state.is_active() {
        return Ok(Response::ok(format!(
            "run {id} is already {}",
            state.as_str()
        )));
    }
    h.request(Request::Stop { now })
        .map_err(Error::from_anyhow)?;
    reg.global.slots.wake(); // a run waiting for a slot sees it at once
    Ok(Response::ok(if now {
        format!("run {id}: stopping now (the current experiment is killed and reverted)")
    } else {
        format!("run {id}: stopping after the current experiment")
    }))
}
