//! The wire: every type that crosses the socket or is printed as `--json`, the framing, and
//! the one error type. It imports nothing from the layers that use it (`client`, `daemon`,
//! `ops`, `run`); only the spec's and the statistics' plain types.
//!
//! The first frame of every connection is `Request::Hello` carrying the protocol version;
//! the daemon answers `Response::Hello` or an error naming both versions and closes.

mod cleanup;
mod error;
pub mod format;
mod frame;
mod merge;
mod report;
mod request;
mod response;
mod results;
mod run;
mod show;

pub use cleanup::{CleanupReport, CleanupRow};
pub use error::{Error, ErrorKind, OpResult};
pub use frame::{Connection, FrameError, MAX_FRAME, MAX_REQUEST};
pub use merge::{MergeReport, MergeRow, MergeStatus};
pub use report::{FailureQuote, Flag, GitLog, KeptChange, Review, Revisit, RunReport, Totals};
pub use request::{CleanupRequest, MergeRequest, Request};
pub use response::{Response, StartedRun};
pub use results::{ResultRow, ResultsTable};
pub use run::{
    ClusterJob, ClusterJobs, Counts, GainEstimate, NoiseState, RunDetail, RunState, RunSummary,
};
pub use show::{ExperimentView, OutputTail};

pub const PROTOCOL_VERSION: u32 = 1;
