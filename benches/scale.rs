//! Scale (issue 9): 32 runs of 20 experiments each at once, with a trivial metric, on this
//! machine; then 128 runs registered (96 of them paused). Run with `cargo bench --bench scale`.
//!
//! * Every run edits its own file in a shared repo (default 1,000 files; set
//!   ARCTL_BENCH_SCALE_FILES): odd experiments lower the number (keep), even ones raise it
//!   (discard), so each TSV is known in advance: all 32 × 21 = 672 rows are checked
//!   (experiment, metric, status, a commit that resolves, the state dir's copy identical),
//!   and every run must finish without error.
//! * The 32 runs are created first (each measures its baseline and pauses), then resumed
//!   together. Throughput: experiments per second from the resume to the last run
//!   finished, with the daemon's default settings (`max_parallel` = the number of cores,
//!   so on two cores 30 of the 32 runs wait for a slot at any time).
//! * The same 32 runs then run on the RAM disk (ARCTL_BENCH_RAM_DIR, default /dev/shm;
//!   `none` skips it) with a daemon of their own: its throughput is printed beside the
//!   disk's (TMPDIR: the disk the user's repos live on).
//! * Memory: the daemon's peak RSS (sampled every 20 ms) while the 32 runs are active,
//!   target ≤ 64 MiB.
//! * Then 96 more runs are started and paused: with 128 registered runs, `status` p99
//!   ≤ 5 ms, and idle CPU (96 paused threads) < 0.5% of a core over the idle window
//!   (ARCTL_BENCH_IDLE_SECS, default 60 s).

mod support;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arctl::protocol::Request;
use support::*;

const RUNS: usize = 32;
const EXPERIMENTS: u32 = 20;
const PAUSED: usize = 96;

/// Odd experiments lower the number by 20 (a 2% gain: keep), even ones raise it by 50
/// (discard).
const AGENT: &str = r#"#!/bin/sh
f="runs/$ARCTL_RUN_ID/value.txt"
v=$(cat "$f")
if [ $((ARCTL_EXPERIMENT % 2)) = 1 ]; then echo $((v-20)) > "$f"; echo "lower to $((v-20))" > "$ARCTL_DESCRIPTION_FILE"
else echo $((v+50)) > "$f"; echo "raise to $((v+50))" > "$ARCTL_DESCRIPTION_FILE"; fi
"#;

/// The TSV row each experiment must produce: (metric, status).
fn expected(n: u32) -> (f64, &'static str) {
    match n {
        0 => (1000.0, "baseline"),
        n if n % 2 == 1 => (1000.0 - 20.0 * n.div_ceil(2) as f64, "keep"),
        n => (1000.0 - 20.0 * (n / 2) as f64 + 50.0, "discard"),
    }
}

fn main() -> ExitCode {
    run(
        "scale: 32 runs x 20 experiments, then 128 registered (issue 9)",
        bench,
    )
}

fn bench(r: &mut Report) -> Result<()> {
    let w = World::new("scale");
    let files: usize = env_num("ARCTL_BENCH_SCALE_FILES", 1_000);
    let all: Vec<String> = (0..RUNS)
        .map(|i| format!("s{i:02}"))
        .chain((0..PAUSED).map(|i| format!("p{i:02}")))
        .collect();
    let repo = w.path("repo");
    gen_runs_repo(&w, &repo, files, &all, "1000\n")?;
    write_exec(&w.path("agent.sh"), AGENT)?;
    let daemon = w.daemon(None)?;
    let settings = arctl::config::Settings::default();
    r.note(format!(
        "{files}-file repo; daemon defaults: max_parallel = {} on {} cores",
        settings.max_parallel,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    ));
    let mut c = daemon.client()?;
    let start_paused = |c: &mut Client, id: &String| -> Result<()> {
        let spec = runs_repo_spec(&w, &repo, id, EXPERIMENTS)?;
        c.start(&spec)?;
        c.call(&Request::Pause { run: id.clone() })?;
        Ok(())
    };

    // The 32 runs are created first (each measures its baseline, then pauses), then
    // resumed together: from there on all 32 are active at once.
    let ids = &all[..RUNS];
    let t0 = Instant::now();
    for id in ids {
        start_paused(&mut c, id)?;
    }
    c.wait_states(ids, Duration::from_secs(1800), |s| s == "paused")?;
    let created = t0.elapsed();

    // Memory sampler: peak RSS while the runs are active.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), daemon.pid);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = proc_status(pid, "VmRSS") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let switches = proc_switches(daemon.pid);
    let cpu0 = proc_cpu(daemon.pid).unwrap_or_default();
    let t0 = Instant::now();
    for id in ids {
        c.call(&Request::Resume { run: id.clone() })?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let threads_active = proc_status(daemon.pid, "Threads").unwrap_or(0);
    c.wait_states(ids, Duration::from_secs(3600), is_ended)?;
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let daemon_cpu = proc_cpu(daemon.pid)
        .unwrap_or_default()
        .saturating_sub(cpu0);
    let wakeups =
        switches_between(&switches, &proc_switches(daemon.pid)) as f64 / elapsed.as_secs_f64();
    let active_peak = peak.load(Ordering::Relaxed);
    let hwm = proc_status(daemon.pid, "VmHWM").unwrap_or(0);

    // Every row of every TSV.
    let (rows_ok, rows, problems) = check_rows(&w, &repo, ids, &c.summaries()?)?;
    let want = RUNS * (EXPERIMENTS as usize + 1);
    for p in problems.iter().take(10) {
        say(format!("problem: {p}"));
    }
    r.check(
        &format!(
            "TSV rows present and correct ({RUNS} x {})",
            EXPERIMENTS + 1
        ),
        &format!("{rows_ok}/{want} ({rows} found)"),
        rows_ok == want && rows == want,
    );
    r.check(
        "every run finished without error",
        &format!("{} problem(s)", problems.len()),
        problems.is_empty(),
    );
    let exps = (RUNS as u32 * EXPERIMENTS) as f64;
    let disk = exps / elapsed.as_secs_f64();
    match ram_dir() {
        Some(dir) => {
            let (ram, ok) = ram_throughput(&dir, files)?;
            r.compare(
                "throughput, 32 runs at once: disk (figure) vs RAM disk (reference)",
                disk,
                ram,
                "exp/s",
                Target::Info,
            );
            r.check("  RAM disk: TSV rows present and correct", &ok.0, ok.1);
        }
        None => r.figure(
            "throughput, 32 runs at once (disk)",
            disk,
            "exp/s",
            Target::Info,
        ),
    }
    r.figure(
        "  wall time for the 640 experiments",
        elapsed.as_secs_f64(),
        "s",
        Target::Info,
    );
    r.figure(
        "  daemon CPU per experiment (its own, children not counted)",
        daemon_cpu.as_secs_f64() * 1000.0 / exps,
        "ms",
        Target::Info,
    );
    r.figure("  daemon wakeups while active", wakeups, "/s", Target::Info);
    r.figure(
        "  time to create the 32 runs (baselines included)",
        created.as_secs_f64(),
        "s",
        Target::Info,
    );
    r.figure(
        "daemon peak RSS, 32 runs active",
        active_peak as f64 / 1024.0,
        "MiB",
        Target::AtMost(64.0),
    );
    r.figure(
        "  daemon peak RSS since start (VmHWM)",
        hwm as f64 / 1024.0,
        "MiB",
        Target::Info,
    );
    r.figure(
        "daemon threads, 32 runs active",
        threads_active as f64,
        "",
        Target::Info,
    );

    // 96 more, paused: 128 registered.
    let paused = &all[RUNS..];
    for id in paused {
        start_paused(&mut c, id)?;
    }
    c.wait_states(paused, Duration::from_secs(1800), |s| s == "paused")?;
    let n = c.summaries()?.len();
    r.check(
        "128 runs registered, 96 paused",
        &format!("{n} runs"),
        n == RUNS + PAUSED,
    );
    report_status(r, &w, &daemon, "128 runs", 5.0)?;
    r.figure(
        "daemon RSS, 128 runs (96 paused)",
        proc_status(daemon.pid, "VmRSS").unwrap_or(0) as f64 / 1024.0,
        "MiB",
        Target::Info,
    );
    r.figure(
        "daemon threads, 128 runs (96 paused)",
        proc_status(daemon.pid, "Threads").unwrap_or(0) as f64,
        "",
        Target::Info,
    );
    report_idle_cpu(r, &daemon, "96 paused runs")?;
    daemon.shutdown()?;
    Ok(())
}

/// The same 32 runs x 20 experiments on the RAM disk `dir`, with a daemon of their own:
/// experiments per second, and whether every TSV row was right.
fn ram_throughput(dir: &Path, files: usize) -> Result<(f64, (String, bool))> {
    let w = World::new_in("scale-ram", dir);
    let ids: Vec<String> = (0..RUNS).map(|i| format!("s{i:02}")).collect();
    let repo = w.path("repo");
    gen_runs_repo(&w, &repo, files, &ids, "1000\n")?;
    write_exec(&w.path("agent.sh"), AGENT)?;
    let daemon = w.daemon(None)?;
    let mut c = daemon.client()?;
    for id in &ids {
        c.start(&runs_repo_spec(&w, &repo, id, EXPERIMENTS)?)?;
        c.call(&Request::Pause { run: id.clone() })?;
    }
    c.wait_states(&ids, Duration::from_secs(1800), |s| s == "paused")?;
    let t0 = Instant::now();
    for id in &ids {
        c.call(&Request::Resume { run: id.clone() })?;
    }
    c.wait_states(&ids, Duration::from_secs(3600), is_ended)?;
    let elapsed = t0.elapsed();
    let (rows_ok, rows, problems) = check_rows(&w, &repo, &ids, &c.summaries()?)?;
    let want = RUNS * (EXPERIMENTS as usize + 1);
    daemon.shutdown()?;
    let eps = (RUNS as u32 * EXPERIMENTS) as f64 / elapsed.as_secs_f64();
    let ok = rows_ok == want && rows == want && problems.is_empty();
    Ok((
        eps,
        (
            format!("{rows_ok}/{want}, {} problem(s)", problems.len()),
            ok,
        ),
    ))
}

/// Check every TSV row of `ids`: (rows as expected, rows found, problems).
fn check_rows(
    w: &World,
    repo: &Path,
    ids: &[String],
    summaries: &[arctl::protocol::RunSummary],
) -> Result<(usize, usize, Vec<String>)> {
    let (mut rows_ok, mut rows, mut problems) = (0usize, 0usize, Vec::new());
    for id in ids {
        let s = summaries
            .iter()
            .find(|s| &s.id == id)
            .context("a run is missing from status")?;
        if s.state.as_str() != "finished"
            || s.error.is_some()
            || s.counts.crashed > 0
            || s.counts.rejected > 0
        {
            problems.push(format!(
                "{id}: {} {:?} {:?}",
                s.state.as_str(),
                s.error,
                s.counts
            ));
        }
        let wt = repo.with_file_name(format!("repo-{id}"));
        let tsv = std::fs::read_to_string(wt.join(format!("autoresearch-{id}.tsv")))?;
        let copy = std::fs::read_to_string(w.state_dir.join("runs").join(id).join("results.tsv"))
            .unwrap_or_default();
        if copy != tsv {
            problems.push(format!(
                "{id}: the state dir's TSV differs from the worktree's"
            ));
        }
        for (n, line) in tsv.lines().skip(1).enumerate() {
            rows += 1;
            let f: Vec<&str> = line.split('\t').collect();
            let (metric, status) = expected(n as u32);
            let good = f.len() == 5
                && f[0] == n.to_string()
                && f[2].parse::<f64>().ok() == Some(metric)
                && f[3] == status
                && !f[4].is_empty()
                && w.git(repo, &["cat-file", "-e", &format!("{}^{{commit}}", f[1])])
                    .is_ok();
            if good {
                rows_ok += 1;
            } else if problems.len() < 10 {
                problems.push(format!("{id} row {n}: {line:?}"));
            }
        }
    }
    Ok((rows_ok, rows, problems))
}
