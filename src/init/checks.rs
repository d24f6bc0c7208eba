//! Checks against the repo before anything is written: how many tracked files each scope
//! glob matches, and one trial run of the metric command to show the number it reads (or
//! why it reads none).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::draft::Draft;
use crate::protocol::Error;
use crate::spec::{self, Glob, MetricTimeout, TimeMode};

/// Longest trial run of the metric when the spec gives no fixed timeout.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(600);

pub(super) struct Repo {
    pub(super) root: PathBuf,
    pub(super) tracked: Vec<String>,
}

pub(super) fn open_repo(dir: &Path) -> Result<Repo, Error> {
    let (repo, info) = crate::git::open_repo(dir).map_err(|e| {
        Error::bad_input(format!(
            "{e:#}\n  arctl runs on a git repository: run `git init` and commit first, or --set repo=PATH"
        ))
    })?;
    let tracked = crate::git::tracked_files(&repo);
    Ok(Repo {
        root: info.root,
        tracked,
    })
}

fn matcher(glob: &str) -> Result<globset::GlobMatcher, String> {
    Ok(Glob::parse(glob)?.matcher())
}

/// One line per glob: how many tracked files it matches. The bool: some include matches none.
pub(super) fn scope_report(
    include: &[String],
    exclude: &[String],
    tracked: &[String],
) -> Result<(String, bool), String> {
    let mut out = String::new();
    let mut empty = false;
    let mut in_scope: Vec<&String> = Vec::new();
    for g in include {
        let m = matcher(g)?;
        let hits: Vec<&String> = tracked.iter().filter(|p| m.is_match(p.as_str())).collect();
        if hits.is_empty() {
            empty = true;
            out.push_str(&format!("  warning: {g} matches no tracked file (only new files could be edited; check the path)\n"));
        } else {
            let examples: Vec<&str> = hits.iter().take(3).map(|s| s.as_str()).collect();
            let more = if hits.len() > 3 { ", ..." } else { "" };
            out.push_str(&format!(
                "  {g}: {} tracked file{} ({}{more})\n",
                hits.len(),
                if hits.len() == 1 { "" } else { "s" },
                examples.join(", ")
            ));
        }
        for h in hits {
            if !in_scope.contains(&h) {
                in_scope.push(h);
            }
        }
    }
    let mut excluded = 0;
    for g in exclude {
        let m = matcher(g)?;
        let n = in_scope.iter().filter(|p| m.is_match(p.as_str())).count();
        excluded += n;
        out.push_str(&format!(
            "  not {g}: takes {n} of those out{}\n",
            if n == 0 { " (warning: none)" } else { "" }
        ));
    }
    if !exclude.is_empty() || include.len() > 1 {
        out.push_str(&format!(
            "  in scope: {} tracked files\n",
            in_scope.len().saturating_sub(excluded)
        ));
    }
    Ok((out, empty))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Run `f` (the trial) and time it, with Ctrl-C turned into `cancel`: the trial's process
/// group is not the terminal's, so Ctrl-C cancels it here, and the caller then quits.
fn interruptible<T>(cancel: &crate::exec::Cancel, f: impl FnOnce() -> T) -> (T, Duration) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    INTERRUPTED.store(false, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    let old = unsafe { sigaction(Signal::SIGINT, &action) }.ok();
    let done = AtomicBool::new(false);
    let t0 = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    cancel.cancel();
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let r = f();
        done.store(true, Ordering::SeqCst);
        r
    });
    let wall = t0.elapsed();
    if let Some(old) = old {
        // SAFETY: restoring the previous disposition.
        let _ = unsafe { sigaction(Signal::SIGINT, &old) };
    }
    (result, wall)
}

pub(super) struct Trial {
    pub(super) value: f64,
    pub(super) wall: Duration,
}

/// Run the metric once in the repo root; the number it reads, or why there is none.
pub(super) fn trial(draft: &Draft, root: &Path, ui: &mut dyn Write) -> Result<Trial, String> {
    let m = draft.metric_spec()?;
    let timeout = match m.timeout {
        MetricTimeout::Fixed(d) => d,
        MetricTimeout::Factor(_) => TRIAL_TIMEOUT,
    };
    let _ = writeln!(
        ui,
        "running the metric once in {} (timeout {}; Ctrl-C stops it)...",
        root.display(),
        spec::format_duration(timeout)
    );
    let dir = std::env::temp_dir().join(format!("arctl-init-{}", std::process::id()));
    let mut cmd = crate::exec::CommandSpec::new(
        m.command.clone(),
        root,
        dir.join("stdout"),
        dir.join("stderr"),
        format!("arctl-init-{}", std::process::id()),
    );
    cmd.timeout = Some(timeout);
    cmd.count_instructions = m.time == Some(TimeMode::Instructions);
    let cancel = crate::exec::Cancel::new();
    let (result, wall) = interruptible(&cancel, || crate::exec::run(&cmd, &cancel));
    let stdout =
        String::from_utf8_lossy(&std::fs::read(dir.join("stdout")).unwrap_or_default()).to_string();
    let stderr =
        String::from_utf8_lossy(&std::fs::read(dir.join("stderr")).unwrap_or_default()).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = result.map_err(|e| format!("could not run `{}`: {e}", m.command))?;
    let tail = || {
        let all = format!("{stdout}{stderr}");
        let lines: Vec<&str> = all.lines().collect();
        let t = lines[lines.len().saturating_sub(8)..].join("\n    ");
        if t.trim().is_empty() {
            "  (it printed nothing)".to_string()
        } else {
            format!("  its last output:\n    {t}")
        }
    };
    if outcome.exit == crate::exec::Exit::Cancelled {
        return Err("interrupted".into());
    }
    if !outcome.exit.success() {
        return Err(format!(
            "`{}` failed ({}) after {:.1}s\n{}",
            m.command,
            outcome.exit.describe(),
            wall.as_secs_f64(),
            tail()
        ));
    }
    let value = match m.extraction() {
        spec::Extraction::Time(TimeMode::Wall) => Ok(wall.as_secs_f64()),
        spec::Extraction::Time(TimeMode::Cpu) => Ok(outcome.cpu_ms as f64 / 1000.0),
        spec::Extraction::Time(TimeMode::Instructions) => outcome
            .instructions
            .map(|i| i as f64)
            .ok_or_else(|| "no instruction count".to_string()),
        how => crate::spec::extract::extract(&how, &stdout, &stderr),
    };
    match value {
        Ok(value) => Ok(Trial { value, wall }),
        Err(why) => Err(format!(
            "`{}` ran, but no number could be read: {why}\n{}",
            m.command,
            tail()
        )),
    }
}

/// How long `init` watches a new guard: one that fails this fast would fail on the
/// baseline; one still running is not waited for (test suites take minutes).
pub(super) const GUARD_CHECK: Duration = Duration::from_secs(10);

/// Run a guard on the current tree for up to [`GUARD_CHECK`]. Err: it failed within that
/// time (with its last output); Ok(false): still running when the time was up (stopped).
pub(super) fn check_guard(command: &str, root: &Path) -> Result<bool, String> {
    let dir = std::env::temp_dir().join(format!("arctl-init-guard-{}", std::process::id()));
    let mut cmd = crate::exec::CommandSpec::new(
        command,
        root,
        dir.join("out"),
        dir.join("out"),
        format!("arctl-init-guard-{}", std::process::id()),
    );
    cmd.timeout = Some(GUARD_CHECK);
    let cancel = crate::exec::Cancel::new();
    let (result, _) = interruptible(&cancel, || crate::exec::run(&cmd, &cancel));
    let out = std::fs::read_to_string(dir.join("out")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = result.map_err(|e| format!("could not run `{command}`: {e}"))?;
    match outcome.exit {
        e if e.success() => Ok(true),
        crate::exec::Exit::TimedOut => Ok(false),
        crate::exec::Exit::Cancelled => Err("interrupted".into()),
        e => {
            let lines: Vec<&str> = out.lines().collect();
            let tail = lines[lines.len().saturating_sub(5)..].join("\n    ");
            Err(format!(
                "`{command}` fails on the current tree ({}){}",
                e.describe(),
                if tail.trim().is_empty() {
                    String::new()
                } else {
                    format!(":\n    {tail}")
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_report_counts_tracked_files() {
        let tracked: Vec<String> = ["src/a.py", "src/b.py", "src/fixtures/f.py", "README.md"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (r, empty) = scope_report(
            &["src/**".into(), "nope/**".into()],
            &["src/fixtures/**".into()],
            &tracked,
        )
        .unwrap();
        assert!(empty);
        assert!(
            r.contains("src/**: 3 tracked files")
                && r.contains("nope/** matches no tracked file")
                && r.contains("in scope: 2"),
            "{r}"
        );
    }
}
