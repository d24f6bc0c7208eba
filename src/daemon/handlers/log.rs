//! `log RUN [-f]`: the run's log from a byte offset on (the client asks again to follow).

use super::{find, Registry};
use crate::protocol::{OpResult, Response};

/// One answer at most, well below the frame limit.
const MAX_CHUNK: usize = 4 * 1024 * 1024;

pub fn handle(reg: &Registry, id: &str, offset: u64) -> OpResult<Response> {
    let h = find(reg, id)?;
    let bytes = std::fs::read(h.paths.log()).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    let end = bytes.len().min(start + MAX_CHUNK);
    let finished = !h.state().is_active() && end == bytes.len();
    Ok(Response::Log {
        text: String::from_utf8_lossy(&bytes[start..end]).to_string(),
        offset: end as u64,
        finished,
    })
}
