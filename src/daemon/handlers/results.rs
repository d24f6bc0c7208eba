//! `results RUN`: the experiment table from the run's journal.

use super::{find, result_rows, Registry};
use crate::protocol::{OpResult, Response, ResultsTable};

pub fn handle(reg: &Registry, id: &str) -> OpResult<Response> {
    let h = find(reg, id)?;
    let direction = h.live().record.spec.spec.metric.direction;
    Ok(Response::Results(ResultsTable {
        run: id.to_string(),
        direction,
        rows: result_rows(&h)?,
    }))
}
