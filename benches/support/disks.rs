//! Where the benches measure and what they count there: the disk the user's repos live on
//! beside a RAM disk (issue 20: figures on a RAM disk alone hid what a real disk costs),
//! and system calls of the daemon counted by strace (its durable writes).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::World;

/// The disk the user's repos live on: TMPDIR, else the system's temp dir.
pub fn disk_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// The RAM disk measured beside it (ARCTL_BENCH_RAM_DIR, default /dev/shm; `none`: no).
pub fn ram_dir() -> Option<PathBuf> {
    let d = std::env::var_os("ARCTL_BENCH_RAM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    (d.as_os_str() != "none" && d.is_dir()).then_some(d)
}

/// Where a bench measures: ("disk", TMPDIR) then ("RAM", the RAM disk) if there is one.
pub fn bases() -> Vec<(&'static str, PathBuf)> {
    let mut v = vec![("disk", disk_dir())];
    v.extend(ram_dir().map(|d| ("RAM", d)));
    v
}

/// Count system calls of a running process (all its threads) while `f` runs, with
/// `strace -f -c -p`: the calls named in `calls`, by name. None when strace is missing or
/// may not attach (then the bench says so rather than guessing).
pub fn count_syscalls<T>(
    w: &World,
    pid: u32,
    calls: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<(T, Option<std::collections::HashMap<String, u64>>)> {
    let out = w.path(&format!(
        "strace-{}.txt",
        Instant::now().elapsed().as_nanos()
    ));
    let child = Command::new("strace")
        .args(["-f", "-c", "-e"])
        .arg(format!("trace={calls}"))
        .arg("-o")
        .arg(&out)
        .arg("-p")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Ok((f()?, None));
    };
    // strace attaches to each thread in turn; give it a moment before the work starts.
    std::thread::sleep(Duration::from_millis(500));
    if child.try_wait()?.is_some() {
        return Ok((f()?, None)); // could not attach (ptrace not allowed)
    }
    let r = f();
    // SAFETY: signalling the strace we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let _ = child.wait();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let counts = text
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let name = *t.last()?;
            let calls: u64 = t.get(3)?.parse().ok()?;
            (name != "total").then(|| (name.to_string(), calls))
        })
        .collect();
    Ok((r?, Some(counts)))
}
