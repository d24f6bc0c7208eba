//! A command's output, capped: the child writes into a pipe, and a thread of ours copies it
//! to the output file, keeping its first `cap` bytes and its last `cap` bytes with a line
//! saying how much was cut in between. A metric that prints gigabytes costs the daemon
//! `cap` bytes of memory and the state dir `2 × cap` bytes, and what follows the cut — the
//! number at the end, the last lines of a traceback — is still there.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

/// The default cap of each end (head and tail) of each stream.
pub const DEFAULT_OUTPUT_CAP: u64 = 1 << 20;

/// The copying thread of one stream.
pub(super) struct Sink {
    thread: JoinHandle<io::Result<u64>>,
}

impl Sink {
    /// Copy what arrives on `from` into `file` until every writer has closed it.
    pub(super) fn start(from: OwnedFd, file: File, cap: u64) -> io::Result<Sink> {
        let thread = std::thread::Builder::new()
            .name("arctl-output".into())
            .spawn(move || copy_capped(File::from(from), file, cap))?;
        Ok(Sink { thread })
    }

    /// Wait for the end of the stream (the tree is gone by now); the bytes it carried.
    pub(super) fn finish(self) -> io::Result<u64> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the output thread panicked")))
    }
}

/// The head straight to `out`; past `cap`, only the last `cap` bytes are kept (a ring), and
/// written after a line naming the cut when the stream ends. Returns the bytes read.
fn copy_capped(mut from: impl Read, mut out: impl Write, cap: u64) -> io::Result<u64> {
    let cap = cap.max(1) as usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    let mut head_left = cap;
    let mut tail = Ring::new(cap);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        let chunk = &buf[..n];
        let to_head = chunk.len().min(head_left);
        if to_head > 0 {
            out.write_all(&chunk[..to_head])?;
            head_left -= to_head;
        }
        tail.push(&chunk[to_head..]);
    }
    if tail.seen > tail.len() as u64 {
        let cut = tail.seen - tail.len() as u64;
        write!(out, "\n[arctl: {cut} bytes of output cut here]\n")?;
    }
    tail.write_to(&mut out)?;
    out.flush()?;
    Ok(total)
}

/// The last `cap` bytes of a stream.
struct Ring {
    buf: Vec<u8>,
    cap: usize,
    /// Where the next byte goes once the buffer is full.
    start: usize,
    /// Bytes pushed in all.
    seen: u64,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            buf: Vec::new(),
            cap,
            start: 0,
            seen: 0,
        }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        if bytes.len() >= self.cap {
            bytes = &bytes[bytes.len() - self.cap..];
            self.buf.clear();
            self.buf.extend_from_slice(bytes);
            self.start = 0;
            return;
        }
        let room = self.cap - self.buf.len();
        let direct = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..direct]);
        for &b in &bytes[direct..] {
            self.buf[self.start] = b;
            self.start = (self.start + 1) % self.cap;
        }
    }

    fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.buf[self.start..])?;
        out.write_all(&self.buf[..self.start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(input: &[u8], cap: u64) -> String {
        let mut out = Vec::new();
        let n = copy_capped(input, &mut out, cap).unwrap();
        assert_eq!(n, input.len() as u64);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn short_output_is_kept_whole() {
        assert_eq!(capped(b"score: 1\n", 100), "score: 1\n");
    }

    #[test]
    fn the_middle_of_a_flood_is_cut_and_its_ends_kept() {
        let mut input = b"HEAD".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"score: 42\n");
        let out = capped(&input, 64);
        assert!(out.starts_with("HEAD"), "{out}");
        assert!(out.ends_with("score: 42\n"), "{out}");
        assert!(out.contains(&format!(
            "[arctl: {} bytes of output cut here]",
            input.len() - 128
        )));
        assert!(out.len() < 200);
    }

    #[test]
    fn the_ring_keeps_the_last_bytes_across_many_pushes() {
        let mut r = Ring::new(5);
        for chunk in [&b"abc"[..], b"defg", b"h", b"ij"] {
            r.push(chunk);
        }
        let mut out = Vec::new();
        r.write_to(&mut out).unwrap();
        assert_eq!(out, b"fghij");
        assert_eq!(r.seen, 10);
    }
}
