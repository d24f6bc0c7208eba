//! One handler per request. Blocking work (git, files) runs on the blocking pool.

use std::sync::Arc;

use super::Registry;
use crate::protocol::{Request, Response, ResultRow, ResultsTable, StartedRun};
use crate::run::journal::ExperimentRecord;
use crate::run::record::RunState;
use crate::run::setup::{self, ActiveScope, SetupError};
use crate::run::status::RunDetail;
use crate::run::{runner, RunHandle};
use crate::store;

pub async fn handle(reg: &Arc<Registry>, req: Request) -> Response {
    let reg2 = reg.clone();
    let blocking = move |f: Box<dyn FnOnce(&Registry) -> Response + Send>| async move {
        tokio::task::spawn_blocking(move || f(&reg2))
            .await
            .unwrap_or_else(|e| Response::failed(format!("internal error: {e}")))
    };
    match req {
        Request::Hello { .. } => Response::bad_input("hello was already exchanged"),
        Request::Status { run: None } => status(reg),
        Request::Status { run: Some(id) } => blocking(Box::new(move |r| detail(r, &id))).await,
        Request::Start {
            spec_path,
            spec_text,
        } => blocking(Box::new(move |r| start(r, &spec_path, &spec_text))).await,
        Request::Stop { run, now } => stop(reg, &run, now),
        Request::Pause { run } => pause(reg, &run, true),
        Request::Resume { run } => pause(reg, &run, false),
        Request::Log { run, offset } => blocking(Box::new(move |r| log(r, &run, offset))).await,
        Request::Results { run } => blocking(Box::new(move |r| results(r, &run))).await,
        Request::Report { run } => blocking(Box::new(move |r| report(r, &run))).await,
        Request::Merge(m) => {
            let reg3 = reg.clone();
            blocking(Box::new(move |_| merge(&reg3, &m))).await
        }
        Request::Cleanup(c) => blocking(Box::new(move |r| cleanup(r, &c))).await,
        Request::Shutdown => {
            reg.request_shutdown();
            Response::Ok {
                message: "daemon shutting down".into(),
            }
        }
    }
}

fn find(reg: &Registry, id: &str) -> Result<Arc<RunHandle>, Response> {
    reg.get(id).ok_or_else(|| {
        let runs = reg.runs();
        Response::bad_input(crate::run::unknown_run(id, runs.keys().map(String::as_str)))
    })
}

fn status(reg: &Registry) -> Response {
    let mut runs: Vec<_> = reg
        .runs()
        .values()
        .map(|h| {
            let mut s = h.summary();
            s.cluster = reg.global.cluster_status(&h.live().record);
            s
        })
        .collect();
    runs.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
    Response::Status {
        runs,
        problems: reg.problems(),
    }
}

fn detail(reg: &Registry, id: &str) -> Response {
    let h = match find(reg, id) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let mut summary = h.summary();
    let (record, resources) = {
        let l = h.live();
        (l.record.clone(), l.last_resources)
    };
    let rows = match result_rows(&h) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let recent = rows[rows.len().saturating_sub(10)..].to_vec();
    summary.cluster = reg.global.cluster_status(&record);
    let limits_mechanism = match &summary.cluster {
        Some(c) => format!("{}: --mem and --cpus-per-task per job, enforced by the cluster; cpu_time as ulimit -t per process", c.executor),
        None => crate::exec::limit_mechanism().to_string(),
    };
    Response::Detail(Box::new(RunDetail {
        summary,
        spec: record.spec.clone(),
        base: record.base.clone(),
        base_commit: record.base_commit.clone(),
        best_commit: record.best_commit.clone(),
        limits_mechanism,
        recent,
        last_peak_rss: resources.map(|r| r.0),
        last_cpu_ms: resources.map(|r| r.1),
        last_wall_ms: resources.map(|r| r.2),
    }))
}

fn start(reg: &Registry, spec_path: &std::path::Path, spec_text: &str) -> Response {
    // A cluster executor is checked first, without the registry lock (it submits a job).
    let cluster_note = match setup::check_executor(&reg.global, spec_path, spec_text) {
        Ok(note) => note,
        Err(e) => return Response::bad_input(e),
    };
    // One creation at a time, so two starts can't race past the id and scope-overlap
    // checks; the registry itself is only locked to read the active scopes and to add the
    // run, so `status` and the other requests are not held up by a checkout (issue 9).
    let _creating = reg.creating.lock().unwrap_or_else(|e| e.into_inner());
    if reg.shutting_down() {
        return Response::failed("the daemon is shutting down");
    }
    let active: Vec<ActiveScope> = reg
        .runs()
        .values()
        .filter_map(|h| {
            let l = h.live();
            l.record.state.is_active().then(|| ActiveScope {
                id: l.record.id.clone(),
                repo: l.record.repo.clone(),
                scope: l.record.spec.spec.scope.clone(),
            })
        })
        .collect();
    let record = match setup::create(&reg.global, spec_path, spec_text, &active) {
        Ok(r) => r,
        Err(SetupError::BadInput(m)) => return Response::bad_input(m),
        Err(SetupError::Failed(m)) => return Response::failed(m),
    };
    let id = record.id.clone();
    let started = StartedRun {
        id: id.clone(),
        worktree: record.worktree.clone(),
        branch: record.branch.clone(),
    };
    let paths = crate::run::record::RunPaths::new(&reg.config.state_dir, &id);
    let handle = Arc::new(RunHandle::new(record, paths, Vec::new()));
    runner::run_log(
        &handle,
        &format!(
            "created: worktree {} on {}",
            started.worktree.display(),
            started.branch
        ),
    );
    if let Some(note) = cluster_note {
        runner::run_log(&handle, &note);
    }
    tracing::info!(run = %id, worktree = %started.worktree.display(), "run created");
    reg.runs().insert(id, handle.clone());
    runner::spawn(handle, reg.global.clone());
    Response::Started(started)
}

fn stop(reg: &Registry, id: &str, now: bool) -> Response {
    let h = match find(reg, id) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let state = h.live().record.state;
    if !state.is_active() {
        return Response::Ok {
            message: format!("run {id} is already {}", state.as_str()),
        };
    }
    h.control(|c, _| {
        c.stop = true;
        c.stop_now |= now;
    });
    reg.global.slots.wake(); // a run waiting for a slot sees it at once
    {
        let mut l = h.live();
        if l.record.state != RunState::Starting {
            l.record.state = RunState::Stopping;
        }
    }
    Response::Ok {
        message: if now {
            format!("run {id}: stopping now (the current experiment is killed and reverted)")
        } else {
            format!("run {id}: stopping after the current experiment")
        },
    }
}

fn pause(reg: &Registry, id: &str, pause: bool) -> Response {
    let h = match find(reg, id) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let state = h.live().record.state;
    if !state.is_active() {
        return Response::bad_input(format!(
            "run {id} is {}: nothing to {}",
            state.as_str(),
            if pause { "pause" } else { "resume" }
        ));
    }
    h.control(|c, _| c.pause = pause);
    reg.global.slots.wake(); // a run waiting for a slot sees it at once
    if !pause && state == RunState::Paused && !h.is_thread_running() {
        return Response::failed(format!("run {id} has no running loop; restart the daemon"));
    }
    Response::Ok {
        message: if pause {
            format!("run {id}: pausing after the current experiment")
        } else {
            format!("run {id}: resumed")
        },
    }
}

fn log(reg: &Registry, id: &str, offset: u64) -> Response {
    let h = match find(reg, id) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let bytes = std::fs::read(h.paths.log()).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    // Cap one answer well below the frame limit; the client asks again.
    let end = bytes.len().min(start + 4 * 1024 * 1024);
    let finished = !h.live().record.state.is_active() && end == bytes.len();
    Response::Log {
        text: String::from_utf8_lossy(&bytes[start..end]).to_string(),
        offset: end as u64,
        finished,
    }
}

fn result_rows(h: &RunHandle) -> Result<Vec<ResultRow>, Response> {
    let direction = h.live().record.spec.spec.metric.direction;
    let (records, _) = store::read_json_lines::<ExperimentRecord>(&h.paths.journal())
        .map_err(|e| Response::failed(format!("run {}: {e:#}", h.id)))?;
    Ok(crate::run::report::result_rows(&records, direction))
}

fn results(reg: &Registry, id: &str) -> Response {
    let h = match find(reg, id) {
        Ok(h) => h,
        Err(e) => return e,
    };
    match result_rows(&h) {
        Ok(rows) => Response::Results(ResultsTable {
            run: id.to_string(),
            direction: h.live().record.spec.spec.metric.direction,
            rows,
        }),
        Err(e) => e,
    }
}

fn report(reg: &Registry, id: &str) -> Response {
    let h = match find(reg, id) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let record = h.live().record.clone();
    match store::read_json_lines::<ExperimentRecord>(&h.paths.journal()) {
        Ok((records, _)) => {
            Response::Report(Box::new(crate::run::report::build(&record, &records)))
        }
        Err(e) => Response::failed(format!("run {id}: {e:#}")),
    }
}

fn op_error(e: crate::run::merge::OpError) -> Response {
    match e {
        crate::run::merge::OpError::BadInput(m) => Response::bad_input(m),
        crate::run::merge::OpError::Failed(m) => Response::failed(m),
    }
}

fn merge(reg: &Arc<Registry>, req: &crate::protocol::MergeRequest) -> Response {
    let runs: Vec<Arc<RunHandle>> = reg.runs().values().cloned().collect();
    // A re-measurement can take long: give it up when the daemon goes down.
    let cancel = crate::exec::Cancel::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (reg, cancel, done) = (reg.clone(), cancel.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if reg.shutting_down() {
                    cancel.cancel();
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let res = crate::run::merge::merge(&runs, &reg.global, req, &cancel);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watcher.join();
    match res {
        Ok(m) => Response::Merge(Box::new(m)),
        Err(e) => op_error(e),
    }
}

fn cleanup(reg: &Registry, req: &crate::protocol::CleanupRequest) -> Response {
    let runs: Vec<Arc<RunHandle>> = reg.runs().values().cloned().collect();
    match crate::run::cleanup::cleanup(&runs, req) {
        Ok(c) => Response::Cleanup(c),
        Err(e) => op_error(e),
    }
}
