//! `status` (every run's summary row) and `status RUN` (one run in detail).

use super::{find, result_rows, Registry};
use crate::ops::status;
use crate::protocol::{OpResult, Response};

pub fn all(reg: &Registry) -> Response {
    let mut runs: Vec<_> = reg
        .runs()
        .values()
        .map(|h| status::summary(h, &reg.global))
        .collect();
    runs.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
    Response::Status {
        runs,
        problems: reg.problems(),
    }
}

pub fn one(reg: &Registry, id: &str) -> OpResult<Response> {
    let h = find(reg, id)?;
    let rows = result_rows(&h)?;
    Ok(Response::Detail(Box::new(status::detail(
        &h,
        &reg.global,
        &rows,
    ))))
}
