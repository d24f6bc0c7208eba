//! Talking to Slurm's client commands (srun, salloc, squeue, scancel, scontrol, sinfo):
//! running one with a deadline, the arguments arctl gives them (job names, `--mem`,
//! `--time`, the site's options, quoting for `sh`) and reading what they print. The
//! allocations, the preflight and the recovery are built on these.

use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::spec::ExecutorSpec;

/// Longest a Slurm client command (squeue, scancel, scontrol, sinfo) may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a cancelled job to leave the queue.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// The Slurm client commands the executor uses.
pub const TOOLS: [&str; 6] = ["srun", "salloc", "squeue", "scancel", "scontrol", "sinfo"];

/// A Slurm job name from a process tag: `arctl-0123/run/3/best` → `arctl-0123.run.3.best`.
pub fn job_name(tag: &str) -> String {
    let name: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect();
    name.trim_end_matches('.').to_string() + if tag.ends_with('/') { "." } else { "" }
}

/// Quote for `sh`.
pub(super) fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whole minutes, rounded up (Slurm time limits are in minutes).
pub(super) fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// A Slurm time limit as sinfo prints it ("infinite", "30", "1:00:00", "2-00:00:00");
/// None: unlimited or unreadable.
pub(super) fn parse_slurm_time(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let secs = match (s.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, sec]) => m * 60 + sec,
        (_, [h, m, sec]) => h * 3600 + m * 60 + sec,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        _ => return None,
    };
    Some(Duration::from_secs(days * 86400 + secs))
}

/// `--mem` in MiB, rounded up.
pub(super) fn mem_arg(bytes: u64) -> String {
    format!("--mem={}M", bytes.div_ceil(1 << 20).max(1))
}

/// Partition, account, gres and the extra options: where and as whom jobs run.
pub(super) fn site_args(spec: &ExecutorSpec) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(p) = &spec.partition {
        a.push(format!("--partition={p}"));
    }
    if let Some(acc) = &spec.account {
        a.push(format!("--account={acc}"));
    }
    if let Some(g) = &spec.gres {
        a.push(format!("--gres={g}"));
    }
    a.extend(spec.extra_args.iter().cloned());
    a
}

/// Run a Slurm client command with a deadline; Err when it cannot start or hangs.
pub fn tool(program: &str, args: &[String]) -> io::Result<std::process::Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running {program}: {e}")))?;
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{program} {} did not answer in {TOOL_TIMEOUT:?}",
                    args.join(" ")
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// stdout, then stderr, trimmed: what a tool said, for messages.
pub(super) fn text(o: &std::process::Output) -> String {
    let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    if !e.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(&e);
    }
    s
}

/// One job of `squeue --user <me>`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: u64,
    pub name: String,
    pub state: String,
}

/// This user's jobs in the queue (any state squeue still shows), or why not.
pub fn my_jobs() -> io::Result<Vec<QueuedJob>> {
    let uid = nix::unistd::getuid().as_raw();
    let o = tool(
        "squeue",
        &[
            "--noheader".into(),
            format!("--user={uid}"),
            "--format=%i|%T|%j".into(),
        ],
    )?;
    if !o.status.success() {
        return Err(io::Error::other(format!("squeue failed: {}", text(&o))));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().splitn(3, '|');
            let id = it.next()?.trim().parse().ok()?;
            let state = it.next()?.trim().to_string();
            Some(QueuedJob {
                id,
                state,
                name: it.next().unwrap_or("").trim().to_string(),
            })
        })
        .collect())
}

/// `scancel` the jobs (errors about jobs already gone are ignored).
pub fn scancel(ids: &[u64]) -> io::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut args = vec!["--quiet".to_string()];
    args.extend(ids.iter().map(u64::to_string));
    let o = tool("scancel", &args)?;
    let t = text(&o).to_lowercase();
    if !o.status.success()
        && !t.contains("invalid job id")
        && !t.contains("already completing or completed")
    {
        return Err(io::Error::other(format!("scancel failed: {}", text(&o))));
    }
    Ok(())
}

/// Cancel this user's unfinished jobs whose name starts with `prefix`, and those of
/// `recorded` (id, name) that still carry the recorded name (the prefix may have changed
/// since, e.g. a moved state dir); wait until they have left the queue. Returns the ids
/// cancelled.
pub fn cancel_matching(prefix: &str, recorded: &[(u64, String)]) -> io::Result<Vec<u64>> {
    let ours = |j: &QueuedJob| {
        (j.name.starts_with(prefix)
            || recorded
                .iter()
                .any(|(id, name)| *id == j.id && *name == j.name))
            && !matches!(
                j.state.as_str(),
                "COMPLETED"
                    | "CANCELLED"
                    | "FAILED"
                    | "TIMEOUT"
                    | "OUT_OF_MEMORY"
                    | "NODE_FAIL"
                    | "PREEMPTED"
                    | "BOOT_FAIL"
                    | "DEADLINE"
            )
    };
    let jobs = my_jobs()?;
    let targets: Vec<u64> = jobs.iter().filter(|j| ours(j)).map(|j| j.id).collect();
    if targets.is_empty() {
        return Ok(targets);
    }
    scancel(&targets)?;
    let deadline = Instant::now() + CANCEL_WAIT;
    loop {
        let left: Vec<u64> = my_jobs()?
            .iter()
            .filter(|j| targets.contains(&j.id) && ours(j))
            .map(|j| j.id)
            .collect();
        if left.is_empty() {
            return Ok(targets);
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "jobs {left:?} are still in the queue {CANCEL_WAIT:?} after scancel"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The full path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_names_and_quoting() {
        assert_eq!(
            job_name("arctl-00ff/loop/3/guard-tests"),
            "arctl-00ff.loop.3.guard-tests"
        );
        assert_eq!(job_name("arctl-00ff/loop/"), "arctl-00ff.loop.");
        assert_eq!(sh_quote("--chdir=/a/b"), "--chdir=/a/b");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(minutes(Duration::from_secs(1)), 1);
        assert_eq!(minutes(Duration::from_secs(61)), 2);
        assert_eq!(mem_arg(200 << 20), "--mem=200M");
        assert_eq!(mem_arg((200 << 20) + 1), "--mem=201M");
    }

    #[test]
    fn slurm_time_limits() {
        let t = |s| parse_slurm_time(s).map(|d| d.as_secs());
        assert_eq!(t("infinite"), None);
        assert_eq!(t("30"), Some(1800));
        assert_eq!(t("1:30"), Some(90));
        assert_eq!(t("1:00:00"), Some(3600));
        assert_eq!(t("2-00:00:00"), Some(2 * 86400));
        assert_eq!(t("1-12"), Some(86400 + 12 * 3600));
        assert_eq!(t("1-0:30"), Some(86400 + 1800));
    }
}
