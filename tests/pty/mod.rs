//! A pseudo-terminal for driving interactive commands from tests (libc only): spawn a
//! command with the pty's slave as its controlling terminal, `expect` text, `send` lines.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Pty {
    master: std::fs::File,
    pub child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    /// How much of `out` earlier expects consumed.
    cursor: usize,
}

impl Pty {
    /// Spawn `cmd` on a new pty (its stdin, stdout and stderr; a new session), 40x120.
    pub fn spawn(cmd: Command) -> Pty {
        Self::spawn_sized(cmd, 40, 120)
    }

    /// Spawn on a pty of `rows` x `cols`.
    pub fn spawn_sized(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        use std::os::unix::process::CommandExt;
        // SAFETY: plain libc pty calls; every result is checked.
        let master_fd =
            unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(
            master_fd >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(unsafe { libc::grantpt(master_fd) }, 0, "grantpt");
        assert_eq!(unsafe { libc::unlockpt(master_fd) }, 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            unsafe { libc::ptsname_r(master_fd, name.as_mut_ptr(), name.len()) },
            0,
            "ptsname_r"
        );
        let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .to_string();
        let master = unsafe { std::fs::File::from_raw_fd(master_fd) };
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&slave_path)
            .expect("open the pty slave");
        // The window size renderers ask for.
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        unsafe { libc::ioctl(master_fd, libc::TIOCSWINSZ, &ws) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn under the pty");
        drop(cmd); // closes the parent's copies of the slave
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child side is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            out,
            cursor: 0,
        }
    }

    /// Everything the command printed so far (lossy UTF-8).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).to_string()
    }

    /// Wait until `needle` appears after what earlier expects consumed; consume through it.
    pub fn expect(&mut self, needle: &str) {
        self.expect_within(needle, Duration::from_secs(30))
    }

    pub fn expect_within(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let out = self.out.lock().unwrap();
                let text = String::from_utf8_lossy(&out[self.cursor.min(out.len())..]).to_string();
                if let Some(i) = text.find(needle) {
                    // Advance by the bytes of the matched prefix (lossy text may differ in
                    // length only for invalid UTF-8, which these commands don't print).
                    self.cursor += text[..i + needle.len()].len();
                    return;
                }
            }
            if Instant::now() > deadline {
                let all = self.output();
                let rest = all.get(self.cursor..).unwrap_or("");
                panic!("timed out after {timeout:?} waiting for {needle:?}; after the last match the pty shows:\n{rest}\n--- all output:\n{all}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Type a line (the pty's line discipline delivers it on the newline).
    pub fn send(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        self.master.flush().unwrap();
    }

    /// Send raw bytes (e.g. "\x03" for Ctrl-C).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// Wait for the command to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the command did not exit within {timeout:?}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
