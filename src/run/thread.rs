//! The run's thread: started by the daemon, it runs the loop ([`super::runner`]) until the
//! run ends or the daemon shuts down, turns an error or a panic into a failed run, and
//! hands its memory back when it ends.

use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;

use crate::run::runner::Runner;
use crate::run::state::{Event, Step};
use crate::run::{Global, Notice, RunHandle};

/// Start the run's thread.
pub fn spawn(h: Arc<RunHandle>, g: Arc<Global>) {
    let h2 = h.clone();
    let thread = std::thread::Builder::new()
        .name(format!("run-{}", h.id))
        .spawn(move || {
            let span = tracing::info_span!("run", id = %h2.id);
            let _enter = span.enter();
            thread_main(h2, g);
        })
        .expect("spawning a run thread");
    h.set_thread(thread);
}

fn thread_main(h: Arc<RunHandle>, g: Arc<Global>) {
    h.live().session_started = Some(Instant::now());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Runner::new(h.clone(), g.clone()).and_then(|mut r| {
            let res = r.run();
            r.close();
            res
        })
    }))
    .unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(anyhow!("internal error (panic): {what}"))
    });
    let failure = result.err().map(|e| {
        let msg = format!("{e:#}");
        tracing::error!(error = %msg, "run failed");
        h.log_line(&format!("FAILED: {msg}"));
        msg
    });
    let session = {
        let mut l = h.live();
        l.step = Step::Idle;
        l.session_started.take()
    };
    let saved = h.update(|r| {
        if let Some(msg) = failure {
            r.apply(Event::Failed);
            r.error = Some(msg);
        }
        if let Some(s) = session {
            r.active_ms += s.elapsed().as_millis() as u64;
        }
    });
    match saved {
        Ok(rec) if !rec.state().is_active() => {
            g.release_cores(&rec.id);
            let notice = match rec.state() {
                crate::run::state::RunState::Failed => Notice::Fail,
                _ => Notice::Finish,
            };
            g.tell(&h, notice);
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %format!("{e:#}"), "saving run state"),
    }
    h.notify();
    // Detach this thread (drop its handle): a joinable thread's stack stays mapped until it
    // is joined, and nothing joins a run that ended by itself (shutdown joins running ones).
    drop(h.take_thread());
    // Hand what the run's thread freed (its repository, caches, buffers) back to the system:
    // glibc keeps freed memory in per-thread arenas otherwise, and an overnight daemon that
    // ran 100 runs held ~38 MiB of it.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
