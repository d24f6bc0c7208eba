//! A command's stdin, written from a thread of its own: the local run's wait loop must
//! keep watching the clock and the tree, so it cannot block on a child that does not read.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Writes the stdin bytes from its own thread, never blocking for long (non-blocking fd +
/// poll), so that a child that does not read cannot deadlock `run`, and the thread can be
/// stopped and joined whatever the child does.
pub(super) struct Feeder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Feeder {
    pub(super) fn start(fd: OwnedFd, data: Vec<u8>) -> io::Result<Feeder> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("arctl-stdin".into())
            .spawn(move || {
                // A write to a pipe whose reader is gone raises SIGPIPE at this thread;
                // keep it blocked here (it is discarded with the thread) and see EPIPE.
                // SAFETY: plain signal-mask manipulation of the current thread.
                unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGPIPE);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                }
                let mut off = 0;
                while off < data.len() && !flag.load(Ordering::SeqCst) {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    let r = unsafe { libc::poll(&mut pfd, 1, 50) };
                    if r <= 0 {
                        continue; // timeout or EINTR: re-check the stop flag
                    }
                    if pfd.revents & libc::POLLOUT == 0 {
                        break; // POLLERR/POLLHUP: the reader is gone
                    }
                    let rest = &data[off..];
                    // SAFETY: writing from a valid slice to an fd we own.
                    let n = unsafe {
                        libc::write(
                            fd.as_raw_fd(),
                            rest.as_ptr() as *const libc::c_void,
                            rest.len(),
                        )
                    };
                    if n > 0 {
                        off += n as usize;
                    } else if n < 0
                        && matches!(
                            io::Error::last_os_error().kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        )
                    {
                        continue;
                    } else {
                        break; // EPIPE or anything else: give up
                    }
                }
                drop(fd); // EOF for the child
            })?;
        Ok(Feeder {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop writing (if not done) and join the thread.
    pub(super) fn finish(self) {
        drop(self);
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
