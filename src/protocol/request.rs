//! What a client asks the daemon: one variant per command that talks to it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Hello {
        version: u32,
    },
    Status {
        #[serde(default)]
        run: Option<String>,
    },
    /// The client sends the spec's absolute path and text; the daemon re-validates it.
    Start {
        spec_path: PathBuf,
        spec_text: String,
        /// Run under this id instead of the spec's (a rerun of a finished spec).
        #[serde(default)]
        id: Option<String>,
    },
    Stop {
        run: String,
        #[serde(default)]
        now: bool,
    },
    Pause {
        run: String,
    },
    Resume {
        run: String,
    },
    /// The run log from byte `offset` on.
    Log {
        run: String,
        #[serde(default)]
        offset: u64,
    },
    Results {
        run: String,
    },
    Report {
        run: String,
    },
    /// One experiment in full (`diff`: its diff only is wanted).
    Show {
        run: String,
        experiment: u32,
        #[serde(default)]
        diff: bool,
    },
    /// Add a note for the run's later prompts (`text`), or clear them (`text: None`).
    Note {
        run: String,
        #[serde(default)]
        text: Option<String>,
    },
    /// Drop an ended, cleaned-up run from the list; `purge` deletes its history too.
    Forget {
        run: String,
        #[serde(default)]
        purge: bool,
    },
    Merge(MergeRequest),
    Cleanup(CleanupRequest),
    Shutdown,
}

impl Request {
    /// Does it change anything (a run, the repository, the daemon)? Read-only requests are
    /// status, log, results and report.
    pub fn changes_state(&self) -> bool {
        !matches!(
            self,
            Request::Hello { .. }
                | Request::Status { .. }
                | Request::Log { .. }
                | Request::Results { .. }
                | Request::Report { .. }
                | Request::Show { .. }
        ) && !matches!(self, Request::Merge(m) if m.dry_run)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    #[serde(default)]
    pub runs: Vec<String>,
    #[serde(default)]
    pub into: Option<String>,
    #[serde(default)]
    pub squash: bool,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    #[serde(default)]
    pub runs: Vec<String>,
    #[serde(default)]
    pub finished: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub keep_branch: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_shape_is_stable() {
        let j = serde_json::to_string(&Request::Stop {
            run: "a".into(),
            now: true,
        })
        .unwrap();
        assert_eq!(j, r#"{"type":"stop","run":"a","now":true}"#);
        assert!(serde_json::from_str::<Request>(r#"{"type":"frobnicate"}"#).is_err());
    }

    #[test]
    fn read_only_requests_are_told_apart() {
        assert!(!Request::Status { run: None }.changes_state());
        assert!(!Request::Merge(MergeRequest {
            dry_run: true,
            ..Default::default()
        })
        .changes_state());
        assert!(Request::Merge(MergeRequest::default()).changes_state());
        assert!(Request::Shutdown.changes_state());
    }
}
