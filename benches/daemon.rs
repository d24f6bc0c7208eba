//! The daemon's own footprint (issue 9): `status` latency with 100 registered runs, memory
//! and CPU when idle. Run with `cargo bench --bench daemon`.
//!
//! * status: p99 of the `status` round trip (all runs) on one connected client, with 100
//!   registered runs (96 finished, 4 paused, each with a few experiments in its history);
//!   the whole `arctl status --json` process is timed too, for information (process start,
//!   connect, handshake, render). Target: p99 ≤ 5 ms.
//! * memory: VmRSS of the daemon process (the release binary) right after start with no
//!   runs, target ≤ 20 MiB; with the 100 runs registered, for information.
//! * idle CPU: user + system time of the daemon over a window (default 60 s; set
//!   ARCTL_BENCH_IDLE_SECS, e.g. 10 for a quick look) with no runs, then with the 100 runs
//!   (4 of them paused, their threads waiting), target < 0.5% of a core each; wakeups
//!   (context switches) per second printed beside.
//!
//! Memory with 32 active runs is measured by the scale bench (`--bench scale`).

mod support;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use arctl::protocol::Request;
use support::*;

/// Each run lowers the number in its own file.
const AGENT: &str =
    "#!/bin/sh\nf=\"runs/$ARCTL_RUN_ID/value.txt\"\nv=$(cat \"$f\"); echo $((v-1)) > \"$f\"\n";

fn main() -> ExitCode {
    run(
        "daemon footprint: status, memory, idle CPU (issue 9)",
        |r| {
            let w = World::new("daemon");
            let daemon = w.daemon(None)?;
            std::thread::sleep(Duration::from_secs(1));
            let rss = proc_status(daemon.pid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
            r.figure(
                "daemon RSS, idle (no runs)",
                rss,
                "MiB",
                Target::AtMost(20.0),
            );
            r.figure(
                "daemon threads, idle (no runs)",
                proc_status(daemon.pid, "Threads").unwrap_or(0) as f64,
                "",
                Target::Info,
            );
            report_idle_cpu(r, &daemon, "no runs")?;

            // 100 runs on one repo, disjoint scopes.
            let n = 100;
            let ids: Vec<String> = (0..n).map(|i| format!("r{i:03}")).collect();
            let repo = w.path("repo");
            gen_runs_repo(&w, &repo, 1_000, &ids, "100\n")?;
            write_exec(&w.path("agent.sh"), AGENT)?;
            let mut c = daemon.client()?;
            let (t, res) = time_ms(|| -> Result<()> {
                for id in &ids {
                    let spec = runs_repo_spec(&w, &repo, id, 3)?;
                    c.start(&spec)?;
                }
                Ok(())
            });
            res?;
            say(format!("started {n} runs in {:.1} s", t / 1000.0));
            // Four of them paused (threads alive, waiting), the rest run to the end.
            for id in &ids[..4] {
                c.call(&Request::Pause { run: id.clone() })?;
            }
            c.wait_states(&ids[4..], Duration::from_secs(1800), is_ended)?;
            c.wait_states(&ids[..4], Duration::from_secs(600), |s| {
                s == "paused" || is_ended(s)
            })?;
            let runs = c.summaries()?;
            let ok = runs
                .iter()
                .filter(|s| ids[4..].contains(&s.id))
                .all(|s| s.state.as_str() == "finished" && s.error.is_none());
            r.check(
                "100 runs registered, 96 finished without error",
                &format!("{} runs", runs.len()),
                ok && runs.len() == n,
            );
            report_status(r, &w, &daemon, "100 runs", 5.0)?;
            let rss = proc_status(daemon.pid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
            r.figure(
                "daemon RSS, 100 runs registered (4 paused)",
                rss,
                "MiB",
                Target::Info,
            );
            r.figure(
                "daemon peak RSS (VmHWM) so far",
                proc_status(daemon.pid, "VmHWM").unwrap_or(0) as f64 / 1024.0,
                "MiB",
                Target::Info,
            );
            report_idle_cpu(r, &daemon, "100 runs, 4 paused")?;
            daemon.shutdown()?;
            Ok(())
        },
    )
}
