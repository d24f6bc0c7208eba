//! Which mechanism enforces limits, and the cgroup v2 path.
//!
//! cgroup v2 is used only when it is *detected*: a cgroup2 hierarchy is mounted, this
//! process's cgroup in it offers the `memory` controller, we may create children in it and
//! enable the controller for them (a delegated cgroup, e.g. a systemd service or user unit
//! with `Delegate=yes`, or the root of the hierarchy when running as root on a cgroup v2
//! host), and a probe child accepts a `memory.max` that reads back as written. Anything
//! else (cgroup v1 or hybrid hosts where the v2 tree has no controllers, no delegation,
//! read-only cgroupfs) falls back to rlimits plus the RSS watchdog.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Limits;

/// Which mechanism enforces memory and CPU-time limits on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitMechanism {
    /// A child cgroup per command under `path` (memory.max, cpu.max, cgroup.kill).
    CgroupV2 { path: PathBuf },
    /// RLIMIT_CPU and RLIMIT_DATA per process, plus a watchdog sampling the RSS and CPU
    /// time of the whole process tree.
    RlimitWatchdog,
}

impl fmt::Display for LimitMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitMechanism::CgroupV2 { path } => write!(f, "cgroup v2 ({})", path.display()),
            LimitMechanism::RlimitWatchdog => write!(f, "rlimits + RSS watchdog"),
        }
    }
}

static DETECTED: OnceLock<Result<PathBuf, String>> = OnceLock::new();

fn detected() -> &'static Result<PathBuf, String> {
    DETECTED.get_or_init(|| {
        let r = detect();
        match &r {
            Ok(p) => tracing::info!("limits enforced by cgroup v2 under {}", p.display()),
            Err(why) => tracing::info!("limits enforced by rlimits + RSS watchdog: {why}"),
        }
        r
    })
}

/// Detect (once, cached) which mechanism enforces limits here.
pub fn limit_mechanism() -> LimitMechanism {
    match detected() {
        Ok(path) => LimitMechanism::CgroupV2 { path: path.clone() },
        Err(_) => LimitMechanism::RlimitWatchdog,
    }
}

/// Why cgroup v2 is not used here (None when it is): for `status` and logs.
pub fn cgroup_v2_unavailable_reason() -> Option<String> {
    detected().as_ref().err().cloned()
}

/// Undo the octal escapes of /proc/self/mountinfo (`\040` for space, ...).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (mount root inside the hierarchy, mount point) of the first cgroup2 mount.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, PathBuf)> {
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if post.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let f: Vec<&str> = pre.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        return Some((
            unescape_mountinfo(f[3]),
            PathBuf::from(unescape_mountinfo(f[4])),
        ));
    }
    None
}

/// This process's path in the v2 hierarchy ("0::/path" line).
fn own_v2_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

fn read_trim(p: &Path) -> io::Result<String> {
    std::fs::read_to_string(p).map(|s| s.trim().to_string())
}

fn write_file(p: &Path, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
    f.write_all(value.as_bytes())
}

fn has_controller(list: &str, c: &str) -> bool {
    list.split_whitespace().any(|x| x == c)
}

fn detect() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let (mount_root, mount_point) =
        cgroup2_mount(&mountinfo).ok_or("no cgroup2 filesystem mounted")?;
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = own_v2_path(&proc_cgroup).ok_or("this process has no cgroup v2 membership")?;
    if own.ends_with("(deleted)") {
        return Err(format!("own cgroup {own} was deleted"));
    }
    let rel = if mount_root == "/" {
        own.trim_start_matches('/').to_string()
    } else {
        own.strip_prefix(&mount_root)
            .ok_or_else(|| format!("own cgroup {own} is outside the mounted subtree {mount_root}"))?
            .trim_start_matches('/')
            .to_string()
    };
    let dir = mount_point.join(&rel);
    let controllers = read_trim(&dir.join("cgroup.controllers"))
        .map_err(|e| format!("cannot read {}/cgroup.controllers: {e}", dir.display()))?;
    if !has_controller(&controllers, "memory") {
        return Err(format!(
            "cgroup v2 at {} offers no memory controller (controllers: [{}]; cgroup v1 or \
             hybrid host?)",
            dir.display(),
            controllers
        ));
    }
    let is_root = rel.is_empty();
    let base = if is_root {
        // The root cgroup may hold processes and still delegate controllers.
        let base = mount_point.join("arctl");
        enable_controllers(&mount_point, &controllers)?;
        mkdir(&base)?;
        base
    } else {
        // Delegated cgroup: the "no internal processes" rule means we first move this
        // process into a leaf, which requires that we are alone in our cgroup.
        let procs = read_trim(&dir.join("cgroup.procs"))
            .map_err(|e| format!("cannot read {}/cgroup.procs: {e}", dir.display()))?;
        let me = std::process::id().to_string();
        if procs
            .lines()
            .any(|p| p.trim() != me && !p.trim().is_empty())
        {
            return Err(format!(
                "cgroup {} is shared with other processes (not delegated to arctl)",
                dir.display()
            ));
        }
        let leaf = dir.join("arctl-daemon");
        mkdir(&leaf)?;
        write_file(&leaf.join("cgroup.procs"), &me).map_err(|e| {
            format!(
                "cannot move into {}: {e} (cgroup not delegated?)",
                leaf.display()
            )
        })?;
        enable_controllers(&dir, &controllers)?;
        dir.clone()
    };
    enable_controllers(&base, &controllers)?;
    // Probe: a child must accept memory.max and read it back.
    let probe = base.join(format!("probe-{}", std::process::id()));
    mkdir(&probe)?;
    let result = (|| {
        let want = 256u64 * 1024 * 1024;
        write_file(&probe.join("memory.max"), &want.to_string())
            .map_err(|e| format!("cannot write {}/memory.max: {e}", probe.display()))?;
        let got = read_trim(&probe.join("memory.max"))
            .map_err(|e| format!("cannot read {}/memory.max: {e}", probe.display()))?;
        if got != want.to_string() {
            return Err(format!("memory.max reads back {got:?}, wrote {want}"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(&probe);
    result.map(|()| base)
}

fn mkdir(p: &Path) -> Result<(), String> {
    match std::fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create cgroup {}: {e}", p.display())),
    }
}

fn enable_controllers(dir: &Path, available: &str) -> Result<(), String> {
    let control = dir.join("cgroup.subtree_control");
    let current = read_trim(&control).unwrap_or_default();
    let mut want = vec!["memory"];
    if has_controller(available, "cpu") {
        want.push("cpu");
    }
    for c in want {
        if has_controller(&current, c) {
            continue;
        }
        let r = write_file(&control, &format!("+{c}"));
        if c == "memory" {
            r.map_err(|e| {
                format!(
                    "cannot enable memory controller in {}: {e}",
                    control.display()
                )
            })?;
        }
    }
    Ok(())
}

/// A cgroup created for one command.
pub(crate) struct CommandCgroup {
    dir: PathBuf,
    oom_kills_before: u64,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl CommandCgroup {
    /// Create a child cgroup for one command and apply `limits`, reading them back.
    pub fn create(base: &Path, tag: &str, limits: &Limits) -> io::Result<CommandCgroup> {
        let clean: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let dir = base.join(format!(
            "cmd-{}-{}-{}",
            clean,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        let mut cg = CommandCgroup {
            dir,
            oom_kills_before: 0,
        };
        if let Some(mem) = limits.memory {
            write_file(&cg.dir.join("memory.max"), &mem.to_string())?;
            let got = read_trim(&cg.dir.join("memory.max"))?;
            // The kernel rounds down to whole pages.
            let page = super::procfs::page_size();
            if got.parse::<u64>().ok() != Some(mem / page * page) {
                return Err(io::Error::other(format!(
                    "memory.max reads back {got:?} after writing {mem}"
                )));
            }
            // No swapping around the limit; the whole cgroup dies together on OOM.
            let _ = write_file(&cg.dir.join("memory.swap.max"), "0");
            let _ = write_file(&cg.dir.join("memory.oom.group"), "1");
        }
        if let Some(cpus) = &limits.cpus {
            if !cpus.is_empty() && cg.dir.join("cpu.max").exists() {
                let period = 100_000u64;
                let quota = period * cpus.len() as u64;
                write_file(&cg.dir.join("cpu.max"), &format!("{quota} {period}"))?;
            }
        }
        cg.oom_kills_before = cg.oom_kills();
        Ok(cg)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Move a process (the gated child, before it execs) into this cgroup.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        write_file(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    pub fn procs(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Did the kernel OOM-kill anything in this cgroup (memory.max hit)?
    pub fn oom_killed(&self) -> bool {
        self.oom_kills() > self.oom_kills_before
    }

    /// Total CPU time used by the cgroup (cpu.stat usage_usec).
    pub fn cpu_usage(&self) -> Option<Duration> {
        std::fs::read_to_string(self.dir.join("cpu.stat"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_micros)
    }

    /// SIGKILL everything in the cgroup (cgroup.kill, else one by one).
    pub fn kill_all(&self) {
        if write_file(&self.dir.join("cgroup.kill"), "1").is_err() {
            for pid in self.procs() {
                if let Some(start) = super::procfs::process_start_time(pid) {
                    super::procfs::signal_ident((pid, start), libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for CommandCgroup {
    fn drop(&mut self) {
        // Best effort: kill stragglers, then remove the (empty) directory.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!("could not remove cgroup {}", self.dir.display());
                return;
            }
            if !self.procs().is_empty() {
                self.kill_all();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_and_cgroup() {
        let mi = "25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  36 25 0:31 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw\n";
        let (root, mp) = cgroup2_mount(mi).unwrap();
        assert_eq!(root, "/");
        assert_eq!(mp, PathBuf::from("/sys/fs/cgroup/uni fied"));
        assert_eq!(
            own_v2_path("4:memory:/x\n0::/a/b\n").as_deref(),
            Some("/a/b")
        );
        assert!(cgroup2_mount("25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n").is_none());
    }

    #[test]
    fn mechanism_is_detected_and_displayed() {
        let m = limit_mechanism();
        let shown = m.to_string();
        match &m {
            LimitMechanism::RlimitWatchdog => {
                assert_eq!(shown, "rlimits + RSS watchdog");
                assert!(cgroup_v2_unavailable_reason().is_some());
            }
            LimitMechanism::CgroupV2 { path } => {
                assert!(shown.starts_with("cgroup v2 ("));
                assert!(path.exists());
            }
        }
        let json = serde_json::to_string(&LimitMechanism::RlimitWatchdog).unwrap();
        assert_eq!(json, r#"{"kind":"rlimit_watchdog"}"#);
    }
}
