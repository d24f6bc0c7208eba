//! Shared helpers of the end-to-end tests: a temp world (HOME, XDG dirs, socket, state dir),
//! real git repos, the real `arctl` binary, and daemons in-process or as child processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use arctl::config::{DaemonConfig, Settings};

pub const BIN: &str = env!("CARGO_BIN_EXE_arctl");

/// The arctl binary the tests run: [`BIN`], or a copy named by `ARCTL_TEST_BIN` (a test
/// re-run as another user, who may not reach the build folder).
pub fn bin() -> String {
    std::env::var("ARCTL_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// Every path a test touches, inside one temp dir.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("arctl-test-")
            .tempdir()
            .unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        World {
            socket: tmp.path().join("run").join("arctl.sock"),
            state_dir: tmp.path().join("state"),
            home,
            tmp,
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn config(&self) -> DaemonConfig {
        DaemonConfig {
            socket: self.socket.clone(),
            state_dir: self.state_dir.clone(),
            settings: Settings::default(),
        }
    }

    /// A daemon on a thread of this process.
    pub fn daemon(&self) -> arctl::daemon::DaemonHandle {
        arctl::daemon::start(self.config()).expect("daemon starts")
    }

    pub fn daemon_with(&self, settings: Settings) -> arctl::daemon::DaemonHandle {
        let mut c = self.config();
        c.settings = settings;
        arctl::daemon::start(c).expect("daemon starts")
    }

    /// The real binary with this world's environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", self.path().join("xdg-run"))
            .env("XDG_STATE_HOME", self.path().join("xdg-state"))
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("ARCTL_SOCKET", &self.socket)
            .env("ARCTL_STATE_DIR", &self.state_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    pub fn arctl(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("arctl runs")
    }

    /// Run arctl and expect exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.arctl(args);
        assert!(
            o.status.success(),
            "arctl {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("arctl {args:?}: not JSON ({e}): {out}"))
    }

    /// Poll `status RUN --json` until `done(summary)` or the deadline.
    pub fn wait_run(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.json(&["--no-autostart", "status", id, "--json"]);
            if done(&v["summary"]) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "run {id} did not get there in {timeout:?}; last status: {v:#}\nlog:\n{}",
                    self.log(id)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_finished(&self, id: &str, timeout: Duration) -> serde_json::Value {
        self.wait_run(id, timeout, |s| {
            let st = s["state"].as_str().unwrap_or("");
            st == "finished" || st == "stopped" || st == "failed"
        })
    }

    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.state_dir.join("runs").join(id).join("run.log"))
            .unwrap_or_default()
    }
}

impl Drop for World {
    /// A daemon a client autostarted in this world must not outlive the test.
    fn drop(&mut self) {
        let _ = self.cmd().args(["--no-autostart", "shutdown"]).output();
    }
}

/// The real `arctl daemon` binary as a child; killed if the test ends without stopping it.
pub struct DaemonProcess(pub std::process::Child);

impl DaemonProcess {
    pub fn spawn(w: &World) -> DaemonProcess {
        Self::spawn_with(w, |_| {})
    }

    /// Spawn with a changed environment (PATH, SLURM_CONF, ...).
    pub fn spawn_with(w: &World, tweak: impl FnOnce(&mut Command)) -> DaemonProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w.path().join("daemon.log"))
            .unwrap();
        let mut cmd = w.cmd();
        tweak(&mut cmd);
        let child = cmd
            .args(["daemon"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = DaemonProcess(child);
        wait_until("the daemon's socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&w.socket).is_ok()
        });
        d
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Wait (with a deadline) for the daemon to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_until("the daemon to exit", Duration::from_secs(30), || {
            status = self.0.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Poll `cond` until true or the deadline.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        o.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

pub fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A git repo at `dir` on branch main with `files` committed.
pub fn repo(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for (p, text) in files {
        if p.ends_with(".sh") {
            write_exec(&dir.join(p), text);
        } else {
            write(&dir.join(p), text);
        }
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

/// The metric of the scripted repos: prints `score: <src/value.txt>`; `crash` fails,
/// `hang` never ends.
pub const METRIC_SH: &str = r#"#!/bin/sh
v=$(cat src/value.txt)
case "$v" in
  crash) echo "Traceback (most recent call last): boom" >&2; exit 1;;
  hang) sleep 1000;;
esac
echo "score: $v"
"#;

/// Rows of a TSV file (header checked and skipped).
pub fn tsv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("experiment\tcommit\tmetric\tstatus\tdescription")
    );
    lines
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
