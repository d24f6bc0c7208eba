//! Framing: a frame is a u32 big-endian length followed by that many bytes of JSON.
//! `Connection` owns a stream and reads or writes one typed frame at a time (both sides use
//! it: the daemon's server and the client).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts. Results of a long run stay far below this.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Largest request the daemon takes: the biggest is `start`, whose spec is at most 1 MiB
/// (its JSON escaping can double that).
pub const MAX_REQUEST: usize = 2 * 1024 * 1024;

/// The body is read in pieces of this size, so memory grows with the bytes that arrive,
/// never with the length a peer announces.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the {1}-byte limit")]
    TooLarge(u64, usize),
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

    /// Read one frame of at most [`MAX_FRAME`] bytes and decode it. `Closed` when the peer
    /// hung up between frames.
    pub async fn read<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, FrameError> {
        let len = self.read_len(MAX_FRAME).await?;
        self.read_body(len).await
    }

    /// Read a frame's length (at most `max`). `Closed` when the peer hung up before it.
    pub async fn read_len(&mut self, max: usize) -> Result<usize, FrameError> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(FrameError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as u64;
        if len > max as u64 {
            return Err(FrameError::TooLarge(len, max));
        }
        Ok(len as usize)
    }

    /// Read a frame's body of `len` bytes (its length already read) and decode it.
    pub async fn read_body<T: for<'de> Deserialize<'de>>(
        &mut self,
        len: usize,
    ) -> Result<T, FrameError> {
        let mut buf = Vec::with_capacity(len.min(READ_CHUNK));
        let read = (&mut self.stream)
            .take(len as u64)
            .read_to_end(&mut buf)
            .await?;
        if read < len {
            return Err(FrameError::Malformed(format!(
                "truncated frame: expected {len} bytes, got {read}"
            )));
        }
        serde_json::from_slice(&buf).map_err(|e| FrameError::Malformed(e.to_string()))
    }

    pub async fn write<T: Serialize>(&mut self, value: &T) -> Result<(), FrameError> {
        let body = serde_json::to_vec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
        if body.len() > MAX_FRAME {
            return Err(FrameError::TooLarge(body.len() as u64, MAX_FRAME));
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
    use crate::protocol::Request;

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
            Err(FrameError::TooLarge(..))
        ));
    }
}
