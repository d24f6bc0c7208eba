//! One handler per request, as pueue's message handlers: each file answers one kind of
//! request. Blocking work (git, files, measuring) runs on the blocking pool; the quick
//! ones (status, stop, pause, shutdown) answer at once.

mod cleanup;
mod forget;
mod log;
mod merge;
mod note;
mod pause;
mod report;
mod results;
mod show;
mod shutdown;
mod start;
mod status;
mod stop;

use std::sync::Arc;

use super::Registry;
use crate::protocol::{Error, OpResult, Request, Response};
use crate::run::{unknown_run, RunHandle};

pub async fn handle(reg: &Arc<Registry>, req: Request) -> Response {
    let answer = match req {
        Request::Hello { .. } => Err(Error::bad_input("hello was already exchanged")),
        Request::Status { run: None } => Ok(status::all(reg)),
        Request::Status { run: Some(id) } => blocking(reg, move |r| status::one(r, &id)).await,
        Request::Start {
            spec_path,
            spec_text,
            id,
        } => blocking(reg, move |r| start::handle(r, &spec_path, &spec_text, id)).await,
        Request::Note { run, text } => blocking(reg, move |r| note::handle(r, &run, text)).await,
        Request::Forget { run, purge } => {
            blocking(reg, move |r| forget::handle(r, &run, purge)).await
        }
        Request::Stop { run, now } => stop::handle(reg, &run, now),
        Request::Pause { run } => pause::handle(reg, &run, true),
        Request::Resume { run } => pause::handle(reg, &run, false),
        Request::Log { run, offset } => blocking(reg, move |r| log::handle(r, &run, offset)).await,
        Request::Results { run } => blocking(reg, move |r| results::handle(r, &run)).await,
        Request::Report { run } => blocking(reg, move |r| report::handle(r, &run)).await,
        Request::Show {
            run, experiment, ..
        } => blocking(reg, move |r| show::handle(r, &run, experiment)).await,
        Request::Merge(m) => blocking(reg, move |r| merge::handle(r, &m)).await,
        Request::Cleanup(c) => blocking(reg, move |r| cleanup::handle(r, &c)).await,
        Request::Shutdown => Ok(shutdown::handle(reg)),
    };
    answer.unwrap_or_else(Response::Error)
}

/// Run `f` on the blocking pool.
async fn blocking(
    reg: &Arc<Registry>,
    f: impl FnOnce(&Arc<Registry>) -> OpResult<Response> + Send + 'static,
) -> OpResult<Response> {
    let reg = reg.clone();
    tokio::task::spawn_blocking(move || f(&reg))
        .await
        .unwrap_or_else(|e| Err(Error::failed(format!("internal error: {e}"))))
}

/// The run a request names.
fn find(reg: &Registry, id: &str) -> OpResult<Arc<RunHandle>> {
    reg.get(id).ok_or_else(|| {
        let runs = reg.runs();
        Error::bad_input(unknown_run(id, runs.keys().map(String::as_str)))
    })
}

/// The journal of a run, as the results table shows it.
fn result_rows(h: &RunHandle) -> OpResult<Vec<crate::protocol::ResultRow>> {
    let records = journal(h)?;
    let direction = h.live().record.spec.spec.metric.direction;
    Ok(crate::ops::results::result_rows(&records, direction))
}

fn journal(h: &RunHandle) -> OpResult<Vec<crate::run::journal::ExperimentRecord>> {
    crate::store::read_json_lines(&h.paths.journal())
        .map(|(r, _)| r)
        .map_err(|e| Error::failed(format!("run {}: {e:#}", h.id)))
}
