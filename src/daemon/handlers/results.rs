//! `results RUN`: the experiment table from the run's journal.

use super::{find, journal, Registry};
use crate::protocol::{OpResult, Response};

pub fn handle(reg: &Registry, id: &str) -> OpResult<Response> {
    let h = find(reg, id)?;
    let direction = h.live().record.spec.spec.metric.direction;
    let records = journal(&h)?;
    Ok(Response::Results(crate::ops::results::table(
        id, &records, direction,
    )))
}
