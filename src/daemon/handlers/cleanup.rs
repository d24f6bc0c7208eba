//! `cleanup [RUN...|--finished]`: remove what ended runs left in their repositories.

use super::Registry;
use crate::protocol::{CleanupRequest, OpResult, Response};

pub fn handle(reg: &Registry, req: &CleanupRequest) -> OpResult<Response> {
    let runs: Vec<_> = reg.runs().values().cloned().collect();
    crate::ops::cleanup::cleanup(&runs, req).map(Response::Cleanup)
}
