//! Worktree creation for a run (issue 9): `arctl start` against `git worktree add` of the
//! same repo at the same commit, on generated repos of 10,000 and 100,000 files.
//! Run with `cargo bench --bench worktree`.
//!
//! * arctl: the `start` request's round trip on a connected client, up to the `started`
//!   answer: spec validation, id and scope checks, branch, worktree checkout (libgit2), the
//!   exclude lines, the run's state folder (written with fsync) and its thread.
//! * reference: `git worktree add -q -b BRANCH PATH main` (the process's wall time).
//! * also printed: `arctl::git::create_worktree` alone (in-process).
//!
//! Each trial times all three, in an order that turns from trial to trial; nothing is
//! deleted before the end, and each size starts after `settle()` (ext4 skips recently freed
//! inodes: file creation is slow for minutes after a mass deletion). Before each timed step dirty pages are written back and the disk is let
//! go quiet (`flush`): on this shared virtual disk a previous checkout's writeback otherwise
//! costs whoever comes next seconds. Target: arctl ≤ 1.0 × git (medians).
//! Knobs: ARCTL_BENCH_QUICK / ARCTL_BENCH_SKIP_100K, ARCTL_BENCH_TRIALS (default 5);
//! disk: ~7 GB (every worktree stays to the end).

mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::*;

/// Write back dirty pages and wait until the disk has been quiet for half a second (at
/// most 30 s) before a timed checkout: otherwise the previous trial's hundreds of MB being
/// flushed, and ext4's journal checkpointing after it, throttle whoever writes next
/// (seconds at 100,000 files).
fn flush() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let written = || {
        std::fs::read_to_string("/proc/diskstats").map_or(0u64, |t| {
            // Field 10 is sectors written; whole disks and partitions alike.
            t.lines()
                .filter_map(|l| l.split_whitespace().nth(9)?.parse::<u64>().ok())
                .sum()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = written();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = written();
        if now == last {
            return;
        }
        last = now;
    }
}

fn main() -> ExitCode {
    run("worktree creation for a run (issue 9)", |r| {
        let w = World::new("worktree");
        write_exec(&w.path("agent.sh"), "#!/bin/sh\nexit 0\n")?;
        let daemon = w.daemon(None)?;
        let mut sizes = vec![(10_000usize, env_num("ARCTL_BENCH_TRIALS", 5usize))];
        if with_100k() {
            sizes.push((100_000, env_num("ARCTL_BENCH_TRIALS", 5usize)));
        } else {
            r.note("100,000-file part skipped (ARCTL_BENCH_QUICK / ARCTL_BENCH_SKIP_100K)");
        }
        for (files, trials) in sizes {
            let repo = w.path(&format!("repo{files}"));
            gen_repo_timed(&w, &repo, files)?;
            settle();
            let (mut a, mut g, mut lib) = (Vec::new(), Vec::new(), Vec::new());
            // Nothing is deleted before the end (the temp dir goes with the World): creating
            // many files after deleting many makes ext4's inode allocator skip the recently
            // freed ones one by one for minutes, which would dominate both figures.
            for i in 0..trials {
                // The order turns each trial (git, arctl, library; arctl, library, git; ...):
                // no one always follows the same neighbour.
                for step in 0..3 {
                    flush();
                    match (i + step) % 3 {
                        0 => {
                            let br = format!("g{files}-{i}");
                            let path = w.path(&format!("git-wt-{files}-{i}"));
                            let t = Instant::now();
                            w.add_worktree(&repo, &path, &br)?;
                            g.push(ms(t.elapsed()));
                        }
                        1 => {
                            let id = format!("wt{}k-{i}", files / 1000);
                            let spec = w.path(&format!("{id}.toml"));
                            let agent = w.path("agent.sh");
                            write(&spec, &spec_text(&id, &repo, "echo 1", "src/**", 1, &agent))?;
                            let mut c = daemon.client()?;
                            let t = Instant::now();
                            c.start(&spec)?;
                            a.push(ms(t.elapsed()));
                            // (The run measures its baseline and makes its one experiment:
                            // no change.)
                            let ids = std::slice::from_ref(&id);
                            c.wait_states(ids, Duration::from_secs(600), is_ended)?;
                        }
                        _ => {
                            let lid = format!("lib{files}-{i}");
                            let path = w.path(&format!("lib-wt-{files}-{i}"));
                            let (repo2, _) = arctl::git::open_repo(&repo)?;
                            let base = repo2.revparse_single("main")?.peel_to_commit()?.id();
                            let t = Instant::now();
                            arctl::git::create_worktree(&repo2, &lid, &lid, base, &path)?;
                            lib.push(ms(t.elapsed()));
                        }
                    }
                }
                say(format!(
                    "{files} files, trial {}: git {:.0} ms, arctl start {:.0} ms, create_worktree {:.0} ms",
                    i + 1,
                    g[i],
                    a[i],
                    lib[i]
                ));
            }
            let k = files / 1000;
            r.compare(
                &format!("worktree for a run, {k}k files (start vs git worktree add)"),
                median(&a),
                median(&g),
                "ms",
                Target::RatioAtMost(1.0),
            );
            r.compare(
                &format!("  create_worktree alone, {k}k files (vs git worktree add)"),
                median(&lib),
                median(&g),
                "ms",
                Target::Info,
            );
            r.note(format!(
                "{k}k files: medians of {trials} alternating trials"
            ));
        }
        daemon.shutdown()?;
        Ok(())
    })
}
