//! The one error type of every operation a user asks for: what went wrong, in words, and
//! its kind, which decides the exit code. The daemon sends it as `Response::Error`; the
//! client produces it too (bad arguments, an unreachable daemon) and exits with its code.

use serde::{Deserialize, Serialize};

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
    /// No daemon answers (exit 3). Never sent by a daemon.
    Unreachable,
    /// The user interrupted the command (Ctrl-C; exit 130). Never sent by a daemon.
    Interrupted,
}

impl ErrorKind {
    /// The process exit code of a command that failed this way.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::BadInput => 2,
            ErrorKind::Failed | ErrorKind::Version => 1,
            ErrorKind::Unreachable => 3,
            ErrorKind::Interrupted => 130,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadInput, message)
    }
    pub fn failed(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Failed, message)
    }
    pub fn unreachable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unreachable, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Interrupted, message)
    }
    /// The kind that matches a process exit code (a child arctl's, as the demo runs them).
    pub fn from_exit_code(code: i32, message: impl Into<String>) -> Error {
        let kind = match code {
            2 => ErrorKind::BadInput,
            3 => ErrorKind::Unreachable,
            130 => ErrorKind::Interrupted,
            _ => ErrorKind::Failed,
        };
        Error::new(kind, message)
    }
    /// An internal error (anyhow chain) as a failed operation.
    pub fn from_anyhow(e: anyhow::Error) -> Error {
        Error::failed(format!("{e:#}"))
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

/// The result of an operation a user asked for.
pub type OpResult<T> = Result<T, Error>;
