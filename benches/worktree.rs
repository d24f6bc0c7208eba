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
//! Trials alternate (git, arctl, library); the worktrees are removed once a size is done
//! (not in between: see below), and each size starts after `settle()` (ext4's recently
//! freed inodes slow down file creation for ~35 s). Target: arctl ≤ 1.0 × git.
//! Knobs: ARCTL_BENCH_QUICK / ARCTL_BENCH_SKIP_100K, ARCTL_BENCH_TRIALS (default 5 at 10k,
//! 3 at 100k).

mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::*;

fn main() -> ExitCode {
    run("worktree creation for a run (issue 9)", |r| {
        let w = World::new("worktree");
        write_exec(&w.path("agent.sh"), "#!/bin/sh\nexit 0\n")?;
        let daemon = w.daemon(None)?;
        let mut sizes = vec![(10_000usize, env_num("ARCTL_BENCH_TRIALS", 5usize))];
        if with_100k() {
            sizes.push((100_000, env_num("ARCTL_BENCH_TRIALS", 3usize)));
        } else {
            r.note("100,000-file part skipped (ARCTL_BENCH_QUICK / ARCTL_BENCH_SKIP_100K)");
        }
        for (files, trials) in sizes {
            let repo = w.path(&format!("repo{files}"));
            let (t, res) = time_ms(|| gen_repo(&w, &repo, files, &[]));
            res?;
            say(format!(
                "{files} files: repo generated in {:.1} s",
                t / 1000.0
            ));
            settle();
            let (mut a, mut g, mut lib) = (Vec::new(), Vec::new(), Vec::new());
            // Worktrees stay until the size is done: creating many files right after
            // deleting many makes ext4's inode allocator skip the recently freed ones one by
            // one, which would dominate both figures.
            let mut made = Vec::new();
            for i in 0..trials {
                // git worktree add
                let br = format!("g{files}-{i}");
                let path = w.path(&format!("git-wt-{files}-{i}"));
                let t = Instant::now();
                w.git(
                    &repo,
                    &[
                        "worktree",
                        "add",
                        "-q",
                        "-b",
                        &br,
                        &path.display().to_string(),
                        "main",
                    ],
                )?;
                g.push(ms(t.elapsed()));
                made.push((path, Some(br)));
                // arctl start
                let id = format!("wt{}k-{i}", files / 1000);
                let spec = w.path(&format!("{id}.toml"));
                write(
                    &spec,
                    &spec_text(&id, &repo, "echo 1", "src/**", 1, &w.path("agent.sh")),
                )?;
                let mut c = daemon.client()?;
                let t = Instant::now();
                c.start(&spec)?;
                a.push(ms(t.elapsed()));
                // (The run measures its baseline and makes its one experiment: no change.)
                c.wait_states(
                    std::slice::from_ref(&id),
                    Duration::from_secs(600),
                    is_ended,
                )?;
                made.push((repo.with_file_name(format!("repo{files}-{id}")), None));
                // the library call alone
                let lid = format!("lib{files}-{i}");
                let path = w.path(&format!("lib-wt-{files}-{i}"));
                let (repo2, _) = arctl::git::open_repo(&repo)?;
                let base = repo2.revparse_single("main")?.peel_to_commit()?.id();
                let t = Instant::now();
                arctl::git::create_worktree(&repo2, &lid, &lid, base, &path)?;
                lib.push(ms(t.elapsed()));
                drop(repo2);
                made.push((path, Some(lid)));
                say(format!(
                    "{files} files, trial {}: git {:.0} ms, arctl start {:.0} ms, create_worktree {:.0} ms",
                    i + 1,
                    g[i],
                    a[i],
                    lib[i]
                ));
            }
            for (path, br) in made {
                drop_worktree(&w, &repo, &path, br.as_deref());
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
