//! Loop overhead: what arctl adds to each experiment beyond the proposer and the metric,
//! against a shell loop doing the seed's steps with the git CLI, on generated repos of 2
//! (tiny), 10,000 and 100,000 files, each on the machine's own disk (TMPDIR) and on a RAM
//! disk (ARCTL_BENCH_RAM_DIR, default /dev/shm) in the same run (issues 9 and 20). Run with
//! `cargo bench --bench loop_overhead`.
//!
//! The proposer changes one line of one file; the metric prints a constant, so every
//! experiment is committed, measured, discarded and reverted (the most git work a
//! deterministic experiment can cause).
//!
//! * arctl: the real daemon (release binary, own process) runs the loop. Per experiment,
//!   overhead = (start of the next experiment − start of this one) − (the proposer's and the
//!   metric's own wall time), from the journal: every step of the daemon's cycle (scope
//!   check, commit, diff stat, durable writes, journal + TSV, revert, bookkeeping,
//!   starting and sweeping the children) is in it. Whole run: from `start` to the run's end.
//! * reference: `loop.sh` in a worktree of the same repo at the same commit runs, per
//!   experiment, the same proposer and metric plus `git status --porcelain -uall` (scope
//!   check), `git add -A`, `git commit`, `git rev-parse --short HEAD`, `git reset --hard`,
//!   `git clean -fd` and appends a TSV row. Overhead = median cycle of that loop − median
//!   cycle of the same loop with the git and TSV steps removed (proposer + metric only).
//!   Whole run: `git worktree add` plus the loop.
//! * Targets: tiny repo, arctl ≤ 1.0 × the shell loop per experiment; 10,000 files ≤ 0.5 ×
//!   per experiment and for the whole run; from 10,000 to 100,000 files arctl's overhead
//!   grows by at most 1.2 × the git CLI's growth factor; at most 3 fsync/fdatasync per
//!   experiment (counted by `strace -f -c` on the daemon, when strace may attach).
//! * Also printed: each git step timed in-process (arctl's git layer, as the daemon calls
//!   it) beside its git CLI equivalent: the profile behind the figures.
//!
//! * Each size of 10,000 files and more starts after `settle()` (ext4's recently freed
//!   inodes slow down file creation for a minute or more after a mass deletion);
//!   worktrees are removed once every size of a disk is done, for the same reason.
//!
//! Knobs: ARCTL_BENCH_QUICK / ARCTL_BENCH_SKIP_100K / ARCTL_BENCH_RAM_DIR (see
//! benches/support), ARCTL_BENCH_ROUNDS (default 3), ARCTL_BENCH_EXPERIMENTS (default 20
//! per round at 10k, twice that for the tiny repo, half that at 100k).

mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use support::*;

const AGENT: &str =
    "#!/bin/sh\nsed -i \"2s/.*/value = $ARCTL_EXPERIMENT/\" src/d000/d00/f000000.txt\n";
const CHANGED: &str = "src/d000/d00/f000000.txt";
const METRIC: &str = "echo 1";

/// The reference loop. `loop.sh MODE N AGENT TSV TIMES`: MODE full = the seed's git steps,
/// null = proposer and metric only. Prints nothing; one timestamp (ns) per cycle to TIMES.
const LOOP_SH: &str = r#"#!/bin/sh
mode=$1; n=$2; agent=$3; tsv=$4; times=$5
best=$(git rev-parse HEAD)
i=1
while [ "$i" -le "$n" ]; do
  date +%s%N >> "$times"
  ARCTL_EXPERIMENT=$i sh -c "$agent"
  if [ "$mode" = full ]; then
    git status --porcelain -uall > /dev/null
    git add -A
    git commit -q -m "experiment $i"
    c=$(git rev-parse --short HEAD)
  fi
  m=$(sh -c 'echo 1')
  if [ "$mode" = full ]; then
    git reset -q --hard "$best"
    git clean -fdq
    printf '%s\t%s\t%s\tdiscard\texperiment %s\n' "$i" "$c" "$m" "$i" >> "$tsv"
  fi
  i=$((i+1))
done
date +%s%N >> "$times"
"#;

struct Size {
    /// "disk" or "RAM".
    base: &'static str,
    files: usize,
    repo: PathBuf,
    arctl: Vec<f64>,
    shell_full: Vec<f64>,
    shell_null: Vec<f64>,
    /// Whole runs (ms): arctl from `start` to the run's end (worktree, baseline and every
    /// experiment); the shell loop from `git worktree add` to its last row.
    whole_arctl: Vec<f64>,
    whole_shell: Vec<f64>,
    rows_ok: bool,
    /// Worktrees to remove once the size is done (not between rounds: ext4's recently
    /// freed inodes would slow down the next round's file creation).
    made: Vec<(PathBuf, String)>,
}

impl Size {
    fn arctl_ms(&self) -> f64 {
        median(&self.arctl)
    }
    fn shell_ms(&self) -> f64 {
        median(&self.shell_full) - median(&self.shell_null)
    }
    fn label(&self) -> String {
        match self.files {
            n if n < 1000 => format!("{n} files"),
            n => format!("{}k files", n / 1000),
        }
    }
}

fn main() -> ExitCode {
    run("loop overhead per experiment (issues 9, 20)", |r| {
        let rounds: usize = env_num("ARCTL_BENCH_ROUNDS", 3);
        let exps: u32 = env_num("ARCTL_BENCH_EXPERIMENTS", 20);
        let mut sizes = vec![(2usize, exps * 2, rounds), (10_000, exps, rounds)];
        if with_100k() {
            sizes.push((100_000, (exps / 2).max(4), rounds.clamp(1, 2)));
        } else {
            r.note("100,000-file part skipped (ARCTL_BENCH_QUICK / ARCTL_BENCH_SKIP_100K)");
        }
        let mut done: Vec<Size> = Vec::new();
        for (base, dir) in bases() {
            let w = World::new_in("loop", &dir);
            r.note(format!("{base}: {}", w.root.display()));
            write_exec(&w.path("agent.sh"), AGENT)?;
            write_exec(&w.path("loop.sh"), LOOP_SH)?;
            let daemon = w.daemon(None)?;
            let first = done.len();
            for &(files, n, rounds) in &sizes {
                let s = one_size(&w, &daemon, r, base, files, n, rounds)?;
                done.push(s);
            }
            durable_writes(&w, &daemon, r, base, exps)?;
            daemon.shutdown()?;
            // Removed only now: a mass deletion slows the next size's file creation.
            for s in &mut done[first..] {
                for (path, br) in std::mem::take(&mut s.made) {
                    drop_worktree(&w, &s.repo, &path, Some(&br));
                }
            }
        }
        report(r, &done);
        Ok(())
    })
}

/// One repo size on one disk: `rounds` of the shell loop and of arctl, then the steps.
fn one_size(
    w: &World,
    daemon: &Daemon,
    r: &mut Report,
    base: &'static str,
    files: usize,
    n: u32,
    rounds: usize,
) -> Result<Size> {
    let repo = w.path(&format!("repo{files}"));
    gen_repo_timed(w, &repo, files)?;
    let mut s = Size {
        base,
        files,
        repo,
        arctl: vec![],
        shell_full: vec![],
        shell_null: vec![],
        whole_arctl: vec![],
        whole_shell: vec![],
        rows_ok: true,
        made: vec![],
    };
    if files >= 10_000 {
        settle();
    }
    for round in 0..rounds {
        shell_round(w, &mut s, round, n)?;
        arctl_round(w, daemon, &mut s, round, n)?;
        say(format!(
            "{base}, {}, round {}: arctl {:.1} ms, shell {:.1} ms (full {:.1} − null {:.1}); whole run {:.0} vs {:.0} ms",
            s.label(),
            round + 1,
            s.arctl_ms(),
            s.shell_ms(),
            median(&s.shell_full),
            median(&s.shell_null),
            median(&s.whole_arctl),
            median(&s.whole_shell),
        ));
    }
    if files >= 10_000 {
        steps(w, &mut s, r)?;
    }
    Ok(s)
}

/// The table: per experiment and whole run, each size on each disk side by side.
fn report(r: &mut Report, done: &[Size]) {
    for s in done {
        let (per, whole) = match s.files {
            2 => (Target::RatioAtMost(1.0), Target::Info),
            10_000 => (Target::RatioAtMost(0.5), Target::RatioAtMost(0.5)),
            _ => (Target::Info, Target::Info),
        };
        let l = format!("{}, {}", s.label(), s.base);
        r.compare(
            &format!("loop overhead/experiment, {l}"),
            s.arctl_ms(),
            s.shell_ms(),
            "ms",
            per,
        );
        r.compare(
            &format!("  whole run, {l}"),
            median(&s.whole_arctl),
            median(&s.whole_shell),
            "ms",
            whole,
        );
        r.check(
            &format!("  TSV rows present and discarded, {l}"),
            if s.rows_ok {
                "all rows"
            } else {
                "missing/wrong rows"
            },
            s.rows_ok,
        );
    }
    for a in done.iter().filter(|s| s.files == 10_000) {
        if let Some(b) = done.iter().find(|b| b.files == 100_000 && b.base == a.base) {
            let ga = b.arctl_ms() / a.arctl_ms();
            let gs = b.shell_ms() / a.shell_ms();
            r.compare(
                &format!("growth 10k -> 100k files (arctl vs git CLI), {}", a.base),
                ga,
                gs,
                "x",
                Target::RatioAtMost(1.2),
            );
        }
    }
    for s in done {
        r.note(format!(
            "{}, {}: {} arctl cycles, {} + {} shell cycles; medians",
            s.label(),
            s.base,
            s.arctl.len(),
            s.shell_full.len(),
            s.shell_null.len()
        ));
    }
}

/// fsync + fdatasync per experiment on the hot path, counted by strace on the daemon: two
/// runs of the tiny repo, `n` and `3n` experiments; the difference over `2n` cancels what a
/// run costs once (creation, baseline, end).
fn durable_writes(w: &World, d: &Daemon, r: &mut Report, base: &str, n: u32) -> Result<()> {
    let repo = w.path("repo2");
    let mut counts = Vec::new();
    for (i, k) in [n, 3 * n].into_iter().enumerate() {
        let id = format!("fs{i}");
        let spec = w.path(&format!("{id}.toml"));
        write(
            &spec,
            &spec_text(&id, &repo, METRIC, "src/**", k, &w.path("agent.sh")),
        )?;
        let ((), c) = count_syscalls(w, d.pid, "fsync,fdatasync", || {
            let mut c = d.client()?;
            c.start(&spec)?;
            c.wait_states(
                std::slice::from_ref(&id),
                Duration::from_secs(600),
                is_ended,
            )?;
            // The run's thread writes its record once more after the state shows it ended.
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })?;
        let wt = repo.with_file_name(format!("repo2-{id}"));
        drop_worktree(w, &repo, &wt, Some(&format!("autoresearch/{id}")));
        match c {
            Some(c) => counts.push(c.values().sum::<u64>() as f64),
            None => {
                r.note(format!(
                    "durable writes, {base}: not counted (strace missing or not allowed to attach)"
                ));
                return Ok(());
            }
        }
    }
    r.figure(
        &format!("durable writes (fsync + fdatasync) per experiment, {base}"),
        (counts[1] - counts[0]) / (2 * n) as f64,
        "",
        Target::AtMost(3.0),
    );
    Ok(())
}

/// The shell loop, null then full, in a fresh worktree at main.
fn shell_round(w: &World, s: &mut Size, round: usize, n: u32) -> Result<()> {
    let br = format!("shell-{}-{round}", s.files);
    let wt = w.path(&br);
    let t0 = std::time::Instant::now();
    w.add_worktree(&s.repo, &wt, &br)?;
    let added = ms(t0.elapsed());
    for mode in ["null", "full"] {
        let t1 = std::time::Instant::now();
        let times = w.path(&format!("times-{}-{round}-{mode}", s.files));
        let tsv = w.path(&format!("shell-{}-{round}.tsv", s.files));
        let mut c = std::process::Command::new("sh");
        w.env(&mut c);
        let st = c
            .current_dir(&wt)
            .arg(w.path("loop.sh"))
            .args([mode, &n.to_string()])
            .arg(w.path("agent.sh"))
            .arg(&tsv)
            .arg(&times)
            .status()?;
        if !st.success() {
            bail!("loop.sh {mode} failed: {st}");
        }
        let t: Vec<f64> = std::fs::read_to_string(&times)?
            .lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .collect();
        let cycles: Vec<f64> = t.windows(2).map(|p| (p[1] - p[0]) / 1e6).collect();
        if mode == "full" {
            s.whole_shell.push(added + ms(t1.elapsed()));
            s.shell_full.extend(cycles);
            let rows = std::fs::read_to_string(&tsv)?.lines().count();
            s.rows_ok &= rows == n as usize;
        } else {
            s.shell_null.extend(cycles);
        }
    }
    s.made.push((wt, br));
    Ok(())
}

fn arctl_round(w: &World, d: &Daemon, s: &mut Size, round: usize, n: u32) -> Result<()> {
    let id = format!("ov{}-{round}", s.files);
    let spec = w.path(&format!("{id}.toml"));
    write(
        &spec,
        &format!(
            "id = \"{id}\"\nrepo = \"{}\"\n[metric]\ncommand = \"{METRIC}\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = {n}\n[proposer]\ncommand = \"{}\"\n",
            s.repo.display(),
            w.path("agent.sh").display()
        ),
    )?;
    let mut c = d.client()?;
    let t0 = std::time::Instant::now();
    c.start(&spec)?;
    c.wait_states(
        std::slice::from_ref(&id),
        Duration::from_secs(3600),
        is_ended,
    )?;
    s.whole_arctl.push(ms(t0.elapsed()));
    let journal = w.state_dir.join("runs").join(&id).join("journal.jsonl");
    let (recs, _) =
        arctl::store::read_json_lines::<arctl::run::journal::ExperimentRecord>(&journal)?;
    let ex: Vec<_> = recs.iter().filter(|r| r.experiment > 0).collect();
    if ex.len() != n as usize {
        bail!(
            "run {id}: {} experiments in the journal, expected {n}",
            ex.len()
        );
    }
    for p in ex.windows(2) {
        let cycle = p[1].started_at_ms as f64 - p[0].started_at_ms as f64;
        s.arctl.push(cycle - p[0].wall_ms as f64);
    }
    let wt = s.repo.with_file_name(format!("repo{}-{id}", s.files));
    let tsv = std::fs::read_to_string(wt.join(format!("autoresearch-{id}.tsv")))
        .context("the run's TSV")?;
    let rows: Vec<&str> = tsv.lines().skip(2).collect();
    s.rows_ok &=
        rows.len() == n as usize && rows.iter().all(|l| l.split('\t').nth(3) == Some("discard"));
    s.made.push((wt, format!("autoresearch/{id}")));
    Ok(())
}

/// Each git step of an experiment, in-process through arctl's git layer (the calls the
/// loop makes, in its order), beside the git CLI doing the same in a second worktree of the
/// same commit (separate trees: a CLI command rewriting the index would make the next
/// libgit2 call re-read it).
fn steps(w: &World, s: &mut Size, r: &mut Report) -> Result<()> {
    use arctl::git::WorkTree;
    let k = if s.files >= 100_000 { 5 } else { 10 };
    let mk = |name: &str| -> Result<PathBuf> {
        let br = format!("{name}-{}", s.files);
        let p = w.path(&br);
        w.add_worktree(&s.repo, &p, &br)?;
        Ok(p)
    };
    let (a_path, g_path) = (mk("steps-a")?, mk("steps-g")?);
    let wt = WorkTree::open(&a_path)?;
    let br = format!("steps-a-{}", s.files);
    let best = arctl::git::parse_oid(&w.git(&a_path, &["rev-parse", "HEAD"])?)?;
    let original = std::fs::read_to_string(a_path.join(CHANGED))?;
    let mut t: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut add = |k: &'static str, v: f64| t.entry(k).or_default().push(v);
    let state = w.path("steps-state");
    std::fs::create_dir_all(&state)?;
    let record = serde_json::json!({"blob": "x".repeat(6000)});
    for i in 0..k {
        // arctl's git layer
        std::fs::write(a_path.join(CHANGED), format!("{original}{i}\n"))?;
        let (ms1, ch) = time_ms(|| wt.changes_since(best));
        let ch = ch?;
        if ch.len() != 1 {
            bail!("changes_since: expected one change, got {ch:?}");
        }
        add("a scope check (changes_since)", ms1);
        let (ms2, c) = time_ms(|| wt.commit_changes(&ch, "experiment", best));
        let c = c?;
        add("a commit (commit_changes)", ms2);
        add("a diff stat", time_ms(|| wt.diff_stat(best, c)).0);
        add(
            "a discarded ref",
            time_ms(|| wt.set_ref(&format!("refs/bench/{i}"), c, "bench")).0,
        );
        let (ms3, res) = time_ms(|| wt.restore(&br, best));
        res?;
        add("a revert (restore)", ms3);
        add(
            "a state write (save_json, fsync)",
            time_ms(|| arctl::store::save_json(&state.join("run.json"), &record)).0,
        );
        add(
            "a journal line (append, fsync)",
            time_ms(|| arctl::store::append_json_line(&state.join("j.jsonl"), &record)).0,
        );
        if std::fs::read_to_string(a_path.join(CHANGED))? != original {
            bail!("restore did not revert the change");
        }
        // the git CLI
        std::fs::write(g_path.join(CHANGED), format!("{original}{i}\n"))?;
        let g = |args: &[&str]| time_ms(|| w.git(&g_path, args));
        add(
            "g scope check (status --porcelain -uall)",
            g(&["status", "--porcelain", "-uall"]).0,
        );
        let (a, _) = g(&["add", "-A"]);
        let (b, _) = g(&["commit", "-q", "-m", "experiment"]);
        add("g commit (add -A + commit)", a + b);
        add(
            "g diff stat (diff --shortstat)",
            g(&["diff", "--shortstat", "HEAD~1", "HEAD"]).0,
        );
        add(
            "g discarded ref (update-ref)",
            g(&["update-ref", &format!("refs/benchg/{i}"), "HEAD"]).0,
        );
        let (a, _) = g(&["reset", "-q", "--hard", &best.to_string()]);
        let (b, _) = g(&["clean", "-fdq"]);
        add("g revert (reset --hard + clean -fd)", a + b);
    }
    drop(wt);
    let g_br = format!("steps-g-{}", s.files);
    s.made.extend([(a_path, br), (g_path, g_br)]);
    say(format!(
        "steps at {}k files (median of {k}):",
        s.files / 1000
    ));
    let pairs = [
        (
            "a scope check (changes_since)",
            "g scope check (status --porcelain -uall)",
        ),
        ("a commit (commit_changes)", "g commit (add -A + commit)"),
        ("a diff stat", "g diff stat (diff --shortstat)"),
        ("a discarded ref", "g discarded ref (update-ref)"),
        ("a revert (restore)", "g revert (reset --hard + clean -fd)"),
    ];
    for (a, g) in pairs {
        let (ma, mg) = (median(&t[a]), median(&t[g]));
        r.compare(
            &format!("  step {}k: {} vs {}", s.files / 1000, &a[2..], &g[2..]),
            ma,
            mg,
            "ms",
            Target::Info,
        );
    }
    for a in [
        "a state write (save_json, fsync)",
        "a journal line (append, fsync)",
    ] {
        r.figure(
            &format!("  step {}k: {}", s.files / 1000, &a[2..]),
            median(&t[a]),
            "ms",
            Target::Info,
        );
    }
    Ok(())
}
