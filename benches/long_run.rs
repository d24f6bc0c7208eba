//! A long run: does an experiment cost the same at its end as at its start? One run of
//! ARCTL_BENCH_LONG (default 2,000; 600 with ARCTL_BENCH_QUICK) experiments on a 2-file
//! repo, a one-line proposer and `echo 1` as the metric (every experiment discarded), on the
//! disk and on the RAM disk. The figure is the median cycle of the last tenth of the run
//! against the first tenth's, from the journal. Run with `cargo bench --bench long_run`.
//!
//! * Target on the disk: ≤ 1.5. Before the fix it was 5.6 over 3,000 experiments (the
//!   snapshots read every discarded ref, the prompt listed every experiment, the TSV was
//!   rewritten whole); 1.2 after, over 2,000. What is left
//!   is most likely ext4's (this machine's has no journal): each new inode skips the inodes
//!   its group freed in the last minute or more, and every experiment replaces a few files.
//! * On the RAM disk the repo lies under `/dev/shm`, which every child may write, so every
//!   snapshot still reads each of the run's discarded refs: printed, not held to the target
//!   (the README's Performance section says why).

mod support;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use support::*;

const AGENT: &str =
    "#!/bin/sh\nsed -i \"2s/.*/value = $ARCTL_EXPERIMENT/\" src/d000/d00/f000000.txt\n";

fn main() -> ExitCode {
    run("a long run: the last experiments against the first", |r| {
        let n: u32 = env_num("ARCTL_BENCH_LONG", if quick() { 600 } else { 2000 });
        for (base, dir) in bases() {
            let w = World::new_in("long", &dir);
            write_exec(&w.path("agent.sh"), AGENT)?;
            let repo = w.path("repo");
            gen_repo(&w, &repo, 2, &[])?;
            let daemon = w.daemon(None)?;
            let spec = w.path("long.toml");
            write(
                &spec,
                &spec_text("long", &repo, "echo 1", "src/**", n, &w.path("agent.sh")),
            )?;
            let mut c = daemon.client()?;
            c.start(&spec)?;
            c.wait_states(&["long".to_string()], Duration::from_secs(3600), is_ended)?;
            daemon.shutdown()?;
            let journal = w.state_dir.join("runs/long/journal.jsonl");
            let (recs, _) =
                arctl::store::read_json_lines::<arctl::run::journal::ExperimentRecord>(&journal)?;
            let starts: Vec<f64> = recs
                .iter()
                .filter(|r| r.experiment > 0)
                .map(|r| r.started_at_ms as f64)
                .collect();
            if starts.len() != n as usize {
                bail!("{} experiments in the journal, expected {n}", starts.len());
            }
            let cycles: Vec<f64> = starts.windows(2).map(|p| p[1] - p[0]).collect();
            let tenth = cycles.len() / 10;
            let (first, last) = (
                median(&cycles[..tenth]),
                median(&cycles[cycles.len() - tenth..]),
            );
            say(format!(
                "{base}: {n} experiments, cycle {first:.1} ms in the first tenth, {last:.1} ms in the last"
            ));
            let target = if base == "disk" {
                Target::RatioAtMost(1.5)
            } else {
                Target::Info
            };
            r.compare(
                &format!("cycle, last tenth vs first tenth, {base}"),
                last,
                first,
                "ms",
                target,
            );
        }
        r.note("RAM: the repo is under /dev/shm, within every child's reach: each snapshot reads the run's discarded refs");
        Ok(())
    })
}
