//! The wire: request and response types, and the frame format.
//!
//! A frame is a u32 big-endian length followed by that many bytes of JSON. The first frame
//! of every connection is `Request::Hello` carrying the protocol version; the daemon answers
//! `Response::Hello` or an error naming both versions and closes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::run::status::{RunDetail, RunSummary};

pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts. Results of a long run stay far below this.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

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
    Merge(MergeRequest),
    Cleanup(CleanupRequest),
    Shutdown,
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

/// Why a request failed; decides the client's exit code.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input: spec, arguments, unknown run, malformed request (exit 2).
    BadInput,
    /// The operation failed (exit 1).
    Failed,
    /// Protocol version mismatch (exit 1).
    Version,
}

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
    Error {
        kind: ErrorKind,
        message: String,
    },
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
    Report(Box<crate::run::report::RunReport>),
    /// `arctl merge`: one row per run, in merge order.
    Merge(Box<crate::run::merge::MergeReport>),
    /// `arctl cleanup`: one row per run.
    Cleanup(crate::run::cleanup::CleanupReport),
}

impl Response {
    pub fn bad_input(message: impl Into<String>) -> Response {
        Response::Error {
            kind: ErrorKind::BadInput,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Response {
        Response::Error {
            kind: ErrorKind::Failed,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartedRun {
    pub id: String,
    pub worktree: PathBuf,
    pub branch: String,
}

/// The experiment table as the TSV holds it, plus decision details from the journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultsTable {
    pub run: String,
    pub direction: crate::spec::Direction,
    pub rows: Vec<ResultRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultRow {
    pub experiment: u32,
    pub commit: String,
    pub metric: Option<f64>,
    pub status: String,
    pub description: String,
    /// Relative change of this experiment's metric against the best before it (positive = better).
    pub change: Option<f64>,
    /// Confidence that the change is real (1 - p), when measured in noisy mode.
    pub confidence: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One side of a socket connection: owns the framing.
pub struct Connection<S> {
    stream: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection { stream }
    }

    /// Read one frame and decode it. `Closed` when the peer hung up between frames.
    pub async fn read<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, FrameError> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(FrameError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as u64;
        if len as usize > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                FrameError::Malformed(format!("truncated frame: expected {len} bytes"))
            } else {
                e.into()
            }
        })?;
        serde_json::from_slice(&buf).map_err(|e| FrameError::Malformed(e.to_string()))
    }

    pub async fn write<T: Serialize>(&mut self, value: &T) -> Result<(), FrameError> {
        let body = serde_json::to_vec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
        if body.len() > MAX_FRAME {
            return Err(FrameError::TooLarge(body.len() as u64));
        }
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_reject_oversize() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut a = Connection::new(a);
        let mut b = Connection::new(b);
        a.write(&Request::Status { run: None }).await.unwrap();
        let r: Request = b.read().await.unwrap();
        assert_eq!(r, Request::Status { run: None });

        let (mut raw, b) = tokio::io::duplex(1 << 16);
        let mut b = Connection::new(b);
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            b.read::<Request>().await,
            Err(FrameError::TooLarge(_))
        ));
    }

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
}
