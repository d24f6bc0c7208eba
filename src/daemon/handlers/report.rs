//! `report RUN`: the seed's Phase 4 for one run, from its record and journal.

use super::{find, journal, Registry};
use crate::protocol::{OpResult, Response};

pub fn handle(reg: &Registry, id: &str) -> OpResult<Response> {
    let h = find(reg, id)?;
    let records = journal(&h)?;
    Ok(Response::Report(Box::new(crate::ops::report::build(
        &h.record(),
        &h.paths,
        &records,
    ))))
}
