//! `show RUN N` and `diff RUN N`: one experiment, from the run's journal and repository.

use super::{find, journal, Registry};
use crate::protocol::{OpResult, Response};

pub fn handle(reg: &Registry, id: &str, n: u32) -> OpResult<Response> {
    let h = find(reg, id)?;
    let records = journal(&h)?;
    let view = crate::ops::show::show(&h, &records, n)?;
    Ok(Response::Experiment(Box::new(view)))
}
