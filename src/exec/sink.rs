//! A command's output, capped: the child writes into a pipe, and a thread of ours copies it
//! to the output file, keeping its first `cap` bytes and its last `cap` bytes with a line
//! saying how much was cut in between. A metric that prints gigabytes costs the daemon
//! `cap` bytes of memory and the state dir `2 × cap` bytes, and what follows the cut — the
//! number at the end, the last lines of a traceback — is still there.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The default cap of each end (head and tail) of each stream.
pub const DEFAULT_OUTPUT_CAP: u64 = 1 << 20;

/// The copying thread of one stream.
pub(super) struct Sink {
    thread: JoinHandle<io::Result<u64>>,
    /// Set once the command's tree is gone: what is in the pipe then is all there is.
    done: Arc<AtomicBool>,
}

impl Sink {
    /// Copy what arrives on `from` into `file` until every writer has closed it, or the
    /// command's tree is gone and the pipe is drained.
    pub(super) fn start(from: OwnedFd, file: File, cap: u64) -> io::Result<Sink> {
        let done = Arc::new(AtomicBool::new(false));
        let reader = Drained {
            pipe: File::from(from),
            done: done.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("arctl-output".into())
            .spawn(move || copy_capped(reader, file, cap))?;
        Ok(Sink { thread, done })
    }

    /// The command's tree is gone: take what is left in the pipe and end; the bytes the
    /// stream carried. (Another command's keeper, forked from the daemon while this pipe
    /// was open, may hold a copy of its write end until it closes what it inherited: the
    /// end of the stream is not waited for.)
    pub(super) fn finish(self) -> io::Result<u64> {
        self.done.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the output thread panicked")))
    }
}

/// The read end of an output pipe: reads block until data, the end of the stream, or — once
/// `done` is set — an empty pipe.
struct Drained {
    pipe: File,
    done: Arc<AtomicBool>,
}

impl Read for Drained {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let done = self.done.load(Ordering::SeqCst);
            let mut pfd = libc::pollfd {
                fd: self.pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for an fd we own.
            let n = unsafe { libc::poll(&mut pfd, 1, if done { 0 } else { 50 }) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n > 0 {
                // Data, or the end of the stream (POLLHUP: read gives 0).
                return self.pipe.read(buf);
            }
            if done {
                return Ok(0);
            }
        }
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

    #[test]
    fn a_copy_of_the_write_end_held_elsewhere_does_not_hold_up_the_end() {
        let (r, w) = crate::exec::spawn::pipe().unwrap();
        let held_elsewhere = w.try_clone().unwrap();
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("out");
        let sink = Sink::start(r, File::create(&path).unwrap(), 1024).unwrap();
        File::from(w).write_all(b"score: 1\n").unwrap();
        // The command is gone; `held_elsewhere` is still open.
        assert_eq!(sink.finish().unwrap(), 9);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "score: 1\n");
        drop(held_elsewhere);
    }

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
