//! The jobs a run has submitted and not seen end: kept in the executor's table (what
//! `arctl status` shows) and mirrored, by id and name, to a ledger file in the run's state
//! folder, so that after a daemon crash [`Executor::recover`](super::Executor::recover)
//! knows which jobs to cancel even when their names no longer match the run's prefix.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Inner, Slurm};
use crate::exec::{epoch_ms, ClusterJob};

#[derive(Serialize, Deserialize, Default)]
struct Ledger {
    schema: u32,
    jobs: Vec<LedgerJob>,
}

#[derive(Serialize, Deserialize, Clone)]
struct LedgerJob {
    id: u64,
    name: String,
}

fn read_ledger(path: &Path) -> Vec<LedgerJob> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Ledger>(&b).ok())
        .map(|l| l.jobs)
        .unwrap_or_default()
}

fn write_ledger(path: &Path, jobs: &BTreeMap<u64, ClusterJob>) -> io::Result<()> {
    use std::io::Write;
    let ledger = Ledger {
        schema: 1,
        jobs: jobs
            .values()
            .map(|j| LedgerJob {
                id: j.id.parse().unwrap_or(0),
                name: j.name.clone(),
            })
            .collect(),
    };
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(&ledger).map_err(io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Slurm {
    /// A job was submitted or changed state (queued → running).
    pub(super) fn track(&self, id: u64, name: &str, state: &str, node: Option<String>) {
        let mut inner = self.lock();
        inner.jobs.insert(
            id,
            ClusterJob {
                id: id.to_string(),
                name: name.to_string(),
                state: state.to_string(),
                node,
                since_ms: epoch_ms(),
            },
        );
        self.save(&inner);
    }

    /// A job ended (or was cancelled).
    pub(super) fn untrack(&self, id: u64) {
        let mut inner = self.lock();
        if inner.jobs.remove(&id).is_some() {
            self.save(&inner);
        }
    }

    fn save(&self, inner: &Inner) {
        if let Some(path) = &self.ledger {
            if let Err(e) = write_ledger(path, &inner.jobs) {
                tracing::warn!("writing the Slurm job ledger {}: {e}", path.display());
            }
        }
    }

    /// The (id, name) of the jobs the ledger file lists: what an earlier daemon submitted.
    pub(super) fn recorded(&self) -> Vec<(u64, String)> {
        self.ledger
            .as_deref()
            .map(read_ledger)
            .unwrap_or_default()
            .into_iter()
            .map(|j| (j.id, j.name))
            .collect()
    }

    /// After recovery: what the file listed is gone.
    pub(super) fn forget_recorded(&self) {
        if let Some(path) = &self.ledger {
            let _ = std::fs::remove_file(path);
        }
    }
}
