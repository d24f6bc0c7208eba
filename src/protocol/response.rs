//! What the daemon answers: one variant per kind of answer.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    CleanupReport, Error, ExperimentView, MergeReport, ResultsTable, RunDetail, RunReport,
    RunSummary,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Hello {
        version: u32,
        daemon_pid: u32,
    },
    Ok {
        message: String,
    },
    Error(Error),
    Started(StartedRun),
    Status {
        runs: Vec<RunSummary>,
        /// State files the daemon could not read (moved aside), one message each.
        #[serde(default)]
        problems: Vec<String>,
    },
    Detail(Box<RunDetail>),
    Log {
        text: String,
        offset: u64,
        finished: bool,
    },
    Results(ResultsTable),
    /// `arctl report`: the seed's Phase 4 for one run.
    Report(Box<RunReport>),
    /// `arctl merge`: one row per run, in merge order.
    Merge(Box<MergeReport>),
    /// `arctl cleanup`: one row per run.
    Cleanup(CleanupReport),
    /// `arctl show` / `arctl diff`: one experiment.
    Experiment(Box<ExperimentView>),
}

impl Response {
    pub fn bad_input(message: impl Into<String>) -> Response {
        Response::Error(Error::bad_input(message))
    }
    pub fn failed(message: impl Into<String>) -> Response {
        Response::Error(Error::failed(message))
    }
    pub fn ok(message: impl Into<String>) -> Response {
        Response::Ok {
            message: message.into(),
        }
    }
}

impl From<Error> for Response {
    fn from(e: Error) -> Response {
        Response::Error(e)
    }
}

/// `arctl start --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartedRun {
    pub id: String,
    pub worktree: PathBuf,
    pub branch: String,
    /// What the spec probably did not mean (a glob matching no tracked file, a judge inside
    /// the scope); the run starts anyway.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_shape_is_stable() {
        let j = serde_json::to_string(&Response::bad_input("no run \"x\"")).unwrap();
        assert_eq!(
            j,
            r#"{"type":"error","kind":"bad_input","message":"no run \"x\""}"#
        );
    }
}
