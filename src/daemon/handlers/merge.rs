//! `merge [RUN...]`: land finished runs' improvements on their base, re-measuring each on
//! top of the ones before it. A re-measurement can take long: it is given up when the
//! daemon shuts down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Registry;
use crate::exec::Cancel;
use crate::protocol::{MergeRequest, OpResult, Response};

pub fn handle(reg: &Arc<Registry>, req: &MergeRequest) -> OpResult<Response> {
    let runs: Vec<_> = reg.runs().values().cloned().collect();
    let cancel = Cancel::default();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (reg, cancel, done) = (reg.clone(), cancel.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if reg.shutting_down() {
                    cancel.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let res = crate::ops::merge::merge(&runs, &reg.global, req, &cancel);
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    res.map(|m| Response::Merge(Box::new(m)))
}
