//! A command's output, capped: the child writes into pipes, and one thread of ours copies
//! them to the output files, keeping the first `cap` bytes and the last `cap` bytes of each
//! with a line saying how much was cut in between. A metric that prints gigabytes costs the
//! daemon `cap` bytes of memory per stream and the state dir `2 × cap` bytes, and what
//! follows the cut — the number at the end, the last lines of a traceback — is still there.
//! One thread for both streams (`poll` on the pipes): a thread per stream was two thread
//! starts and joins per command, and on a busy machine each start waited for a core.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The default cap of each end (head and tail) of each stream.
pub const DEFAULT_OUTPUT_CAP: u64 = 1 << 20;

/// The copying thread of one command's streams.
pub(super) struct Sinks {
    thread: JoinHandle<io::Result<Vec<u64>>>,
    /// Set once the command's tree is gone: what is in the pipes then is all there is.
    done: Arc<AtomicBool>,
}

impl Sinks {
    /// Copy what arrives on each pipe into its file until every writer has closed it, or
    /// the command's tree is gone and the pipe is drained.
    pub(super) fn start(streams: Vec<(OwnedFd, File)>, cap: u64) -> io::Result<Sinks> {
        let done = Arc::new(AtomicBool::new(false));
        let streams: Vec<(File, Capped<File>)> = streams
            .into_iter()
            .map(|(pipe, file)| (File::from(pipe), Capped::new(file, cap)))
            .collect();
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("arctl-output".into())
            .spawn(move || pump(streams, &flag))?;
        Ok(Sinks { thread, done })
    }

    /// The command's tree is gone: take what is left in the pipes and end; the bytes each
    /// stream carried. (Another command's keeper, forked from the daemon while a pipe was
    /// open, may hold a copy of its write end until it closes what it inherited: the end
    /// of the stream is not waited for.)
    pub(super) fn finish(self) -> io::Result<Vec<u64>> {
        self.done.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the output thread panicked")))
    }
}

/// Until each pipe ends (or, once `done`, is empty): read what is there into its file.
fn pump(mut streams: Vec<(File, Capped<File>)>, done: &AtomicBool) -> io::Result<Vec<u64>> {
    let mut open: Vec<usize> = (0..streams.len()).collect();
    let mut buf = vec![0u8; 64 * 1024];
    while !open.is_empty() {
        let finishing = done.load(Ordering::SeqCst);
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|&i| libc::pollfd {
                fd: streams[i].0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: valid pollfds for fds we own.
        let n = super::spawn::retry_interrupted(|| unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                if finishing { 0 } else { 50 },
            )
        })?;
        if n == 0 {
            if finishing {
                break; // the tree is gone and the pipes are empty
            }
            continue;
        }
        let mut ended = Vec::new();
        for (k, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            // Data, or the end of the stream (POLLHUP: read gives 0).
            let i = open[k];
            match streams[i].0.read(&mut buf) {
                Ok(0) => ended.push(i),
                Ok(n) => streams[i].1.feed(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        open.retain(|i| !ended.contains(i));
    }
    streams.into_iter().map(|(_, c)| c.end()).collect()
}

/// One stream's copy: the head straight to `out`; past `cap`, only the last `cap` bytes
/// are kept (a ring), and written after a line naming the cut when the stream ends.
struct Capped<W: Write> {
    out: W,
    head_left: usize,
    tail: Ring,
    total: u64,
}

impl<W: Write> Capped<W> {
    fn new(out: W, cap: u64) -> Capped<W> {
        let cap = cap.max(1) as usize;
        Capped {
            out,
            head_left: cap,
            tail: Ring::new(cap),
            total: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.total += chunk.len() as u64;
        let to_head = chunk.len().min(self.head_left);
        if to_head > 0 {
            self.out.write_all(&chunk[..to_head])?;
            self.head_left -= to_head;
        }
        self.tail.push(&chunk[to_head..]);
        Ok(())
    }

    /// The stream ended: the cut line and the tail. Returns the bytes it carried.
    fn end(mut self) -> io::Result<u64> {
        let tail = &self.tail;
        if tail.seen > tail.len() as u64 {
            let cut = tail.seen - tail.len() as u64;
            write!(self.out, "\n[arctl: {cut} bytes of output cut here]\n")?;
        }
        self.tail.write_to(&mut self.out)?;
        self.out.flush()?;
        Ok(self.total)
    }
}

/// [`Capped`] over a whole reader (the tests' way in).
#[cfg(test)]
fn copy_capped(mut from: impl Read, out: impl Write, cap: u64) -> io::Result<u64> {
    let mut c = Capped::new(out, cap);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return c.end(),
            Ok(n) => c.feed(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
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
        let (r2, w2) = crate::exec::spawn::pipe().unwrap();
        let err = dir.path().join("err");
        let sinks = Sinks::start(
            vec![
                (r, File::create(&path).unwrap()),
                (r2, File::create(&err).unwrap()),
            ],
            1024,
        )
        .unwrap();
        File::from(w).write_all(b"score: 1\n").unwrap();
        File::from(w2).write_all(b"warning\n").unwrap();
        // The command is gone; `held_elsewhere` is still open.
        assert_eq!(sinks.finish().unwrap(), vec![9, 8]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "score: 1\n");
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "warning\n");
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
