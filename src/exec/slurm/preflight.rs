//! What `arctl start` checks before it creates a run on Slurm ([`Executor::preflight`]),
//! and the shared-filesystem check before the baseline ([`Executor::check_visible`]): the
//! commands run in the run's worktree on the compute nodes, so the repository, the
//! worktrees and the state dir must be visible there, at the same path. The checks come
//! apart from the executor proper because each one reads a different tool's answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

use super::tools::{mem_arg, sh_quote, site_args, text, tool, which, TOOLS};
use super::Slurm;
use crate::exec::executor::VisibilityCheck;
use crate::exec::{Cancel, CommandSpec, Executor, Exit};
use crate::spec::ExecutorSpec;

/// How long the shared-filesystem check before the baseline may run (once started).
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// The client commands are on PATH, the controller answers, the partition exists, and a job
/// with the run's options can start and sees `dirs` (the shared-filesystem requirement).
/// Ok: maybe a note (the check job could not start at once, so the visibility is checked
/// again before the baseline); Err: what is wrong, for the user.
pub(super) fn preflight(
    spec: &ExecutorSpec,
    cpus: Option<u32>,
    memory: Option<u64>,
    dirs: &[PathBuf],
    name: &str,
) -> Result<Option<String>, String> {
    check_tools()?;
    check_controller()?;
    check_partition(spec)?;
    check_options(spec, cpus, memory, name)?;
    check_job(spec, dirs, name)
}

fn check_tools() -> Result<(), String> {
    for t in TOOLS {
        if which(t).is_none() {
            return Err(format!(
                "executor kind = \"slurm\": `{t}` is not on PATH; the Slurm executor needs the Slurm client commands ({}) on the machine where the arctl daemon runs",
                TOOLS.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_controller() -> Result<(), String> {
    let ping = tool("scontrol", &["ping".into()]).map_err(|e| {
        format!("executor kind = \"slurm\": the Slurm controller is not reachable: {e}")
    })?;
    let said = text(&ping);
    if !ping.status.success() || !said.contains("is UP") {
        return Err(format!(
            "executor kind = \"slurm\": the Slurm controller is not reachable (scontrol ping: {})",
            said.lines().next().unwrap_or("no answer")
        ));
    }
    Ok(())
}

/// The spec's partition exists (sinfo lists it, or scontrol knows it although it is hidden);
/// without one, the cluster has a default.
fn check_partition(spec: &ExecutorSpec) -> Result<(), String> {
    let parts = tool("sinfo", &["--noheader".into(), "--format=%P".into()])
        .map_err(|e| format!("executor kind = \"slurm\": {e}"))?;
    let mut names: Vec<String> = String::from_utf8_lossy(&parts.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    names.dedup();
    let plain: Vec<String> = names
        .iter()
        .map(|n| n.trim_end_matches('*').to_string())
        .collect();
    match &spec.partition {
        Some(p) if !plain.contains(p) => {
            let o = tool(
                "scontrol",
                &[
                    "show".into(),
                    "partition".into(),
                    "--oneliner".into(),
                    p.clone(),
                ],
            )
            .ok();
            if !o.as_ref().is_some_and(|o| o.status.success()) {
                return Err(format!(
                    "executor.partition = {p:?}: no such Slurm partition (partitions: {})",
                    if plain.is_empty() {
                        "none".into()
                    } else {
                        plain.join(", ")
                    }
                ));
            }
        }
        None if !names.iter().any(|n| n.ends_with('*')) => {
            return Err(format!("executor kind = \"slurm\": the cluster has no default partition; set executor.partition (partitions: {})", plain.join(", ")));
        }
        _ => {}
    }
    Ok(())
}

/// Would the cluster accept a job with the run's options (without submitting one)?
fn check_options(
    spec: &ExecutorSpec,
    cpus: Option<u32>,
    memory: Option<u64>,
    name: &str,
) -> Result<(), String> {
    let mut args = vec![
        "--test-only".to_string(),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        format!("--job-name={name}"),
    ];
    if let Some(c) = cpus {
        args.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = memory {
        args.push(mem_arg(m));
    }
    args.extend(site_args(spec));
    args.push("true".into());
    let o = tool("srun", &args).map_err(|e| format!("executor kind = \"slurm\": {e}"))?;
    if !o.status.success() {
        let said: Vec<String> = text(&o)
            .lines()
            .filter(|l| !l.contains("to start at"))
            .map(str::to_string)
            .collect();
        return Err(format!(
            "executor kind = \"slurm\": the cluster refuses a job with the run's options ({}): {}",
            args[1..args.len() - 1].join(" "),
            said.join("; ")
        ));
    }
    Ok(())
}

/// A small real job: does it start, and does the node see the dirs?
fn check_job(spec: &ExecutorSpec, dirs: &[PathBuf], name: &str) -> Result<Option<String>, String> {
    let mut args = vec![
        "--immediate=30".to_string(),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        "--time=1".into(),
        format!("--job-name={name}"),
        "--chdir=/".into(),
        "--input=none".into(),
    ];
    args.extend(site_args(spec));
    args.extend(["--".into(), "sh".into(), "-c".into(), "for d; do [ -d \"$d\" ] || echo \"arctl-missing $d\"; done; echo \"arctl-node $(hostname)\"".into(), "sh".into()]);
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    let o = tool("srun", &args).map_err(|e| format!("executor kind = \"slurm\": {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let node = out
        .lines()
        .find_map(|l| l.strip_prefix("arctl-node "))
        .unwrap_or("?")
        .to_string();
    let missing: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("arctl-missing "))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "executor kind = \"slurm\": {} not visible on compute node {node}: arctl runs the commands in the run's worktree on the compute nodes, so the repository, its worktrees and the arctl state dir must be on a filesystem shared with them, at the same path",
            missing.join(", ")
        ));
    }
    if o.status.success() && out.contains("arctl-node ") {
        return Ok(None);
    }
    let said = text(&o);
    let lower = said.to_lowercase();
    if lower.contains("unable to allocate resources")
        && (lower.contains("busy")
            || lower.contains("immediate")
            || lower.contains("temporarily unavailable"))
    {
        return Ok(Some(format!("the shared-filesystem check could not start at once ({}); it runs again before the baseline", said.lines().last().unwrap_or(""))));
    }
    Err(format!(
        "executor kind = \"slurm\": a test job with the run's options failed: {}",
        if said.is_empty() {
            format!("srun {}", o.status)
        } else {
            said
        }
    ))
}

/// Before the baseline: a job in the worktree that fails when one of `dirs` is missing on
/// its node. Ok(false): interrupted.
pub(super) fn check_visible(
    slurm: &Slurm,
    dirs: &[PathBuf],
    check: &VisibilityCheck,
    cancel: &Cancel,
) -> anyhow::Result<bool> {
    let command = format!(
        "for d in {}; do [ -d \"$d\" ] || {{ echo \"not visible: $d\" >&2; exit 3; }}; done",
        dirs.iter()
            .map(|d| sh_quote(&d.display().to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut spec = CommandSpec::new(
        command,
        check.cwd.clone(),
        check.stdout.clone(),
        check.stderr.clone(),
        check.tag.clone(),
    );
    spec.timeout = Some(CHECK_TIMEOUT);
    let o = slurm.run(&spec, cancel).map_err(|e| {
        anyhow!(
            "checking the worktree on the cluster ({}): {e}",
            slurm.describe()
        )
    })?;
    if o.exit == Exit::Cancelled {
        return Ok(false);
    }
    if !o.exit.success() {
        let err = std::fs::read_to_string(&check.stderr).unwrap_or_default();
        let node = o.node.as_deref().unwrap_or("?");
        return Err(anyhow!(
            "{}: {} not visible on compute node {node} ({}): they must be on a filesystem shared with the compute nodes, at the same path",
            slurm.describe(),
            which_dirs(dirs),
            err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(&o.exit.describe())
        ));
    }
    Ok(true)
}

/// "the run's worktree W or state folder S is" for the loop's pair (its message since the
/// check existed); any other list by name.
fn which_dirs(dirs: &[PathBuf]) -> String {
    match dirs {
        [worktree, state] => format!(
            "the run's worktree {} or state folder {} is",
            worktree.display(),
            state.display()
        ),
        _ => {
            let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            format!("one of {} is", names.join(", "))
        }
    }
}
