//! Parallel runs: disjoint scopes side by side, overlap refused, limits, timeouts, nothing
//! left running, dedicated cores, exclusive measurements.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// An agent that lowers the number in its run's own file by one.
const LOWER_AGENT: &str = r#"#!/bin/sh
f="src/$ARCTL_RUN_ID/value.txt"
v=$(cat "$f"); echo $((v-1)) > "$f"; echo "lower $ARCTL_RUN_ID to $((v-1))" > "$ARCTL_DESCRIPTION_FILE"
"#;

fn spec(w: &World, repo: &Path, id: &str, include: &str, extra: &str) -> std::path::PathBuf {
    let p = w.path().join(format!("{id}.toml"));
    write(
        &p,
        &format!(
            r#"
id = "{id}"
repo = "{}"
[metric]
command = "cat src/{id}/value.txt"
direction = "lower"
[scope]
include = ["{include}"]
[budget]
max_experiments = 4
[proposer]
command = "{}"
{extra}
"#,
            repo.display(),
            w.path().join("agent.sh").display()
        ),
    );
    p
}

fn race(n: usize) {
    let w = World::new();
    let repo = w.path().join("proj");
    let ids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let files: Vec<(String, String)> = ids
        .iter()
        .map(|id| (format!("src/{id}/value.txt"), "100\n".to_string()))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    common::repo(&repo, &files);
    write_exec(&w.path().join("agent.sh"), LOWER_AGENT);
    let _d = w.daemon_with(arctl::config::Settings {
        max_parallel: 2,
        resume: true,
        ..Default::default()
    });
    for id in &ids {
        let s = spec(&w, &repo, id, &format!("src/{id}/**"), "");
        assert_eq!(w.ok(&["start", s.to_str().unwrap()]).trim(), id);
    }
    for id in &ids {
        let st = w.wait_finished(id, Duration::from_secs(120));
        assert_eq!(st["summary"]["state"], "finished", "{st:#}");
        assert_eq!(st["summary"]["best"], 96.0, "{id}: {st:#}\n{}", w.log(id));
        let wt = w.path().join(format!("proj-{id}"));
        let rows = tsv_rows(&wt.join(format!("autoresearch-{id}.tsv")));
        assert_eq!(rows.len(), 5, "{id}");
        assert!(
            rows.iter().skip(1).all(|r| r[3] == "keep"),
            "{id}: {rows:?}"
        );
        // Each branch holds only its own run's changes.
        let changed = git(
            &repo,
            &["diff", "--name-only", "main", &format!("autoresearch/{id}")],
        );
        assert_eq!(changed, format!("src/{id}/value.txt"));
        assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    }
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
}

#[test]
fn two_runs_race_side_by_side() {
    race(2);
}

#[test]
fn five_runs_race_side_by_side_under_a_parallelism_cap() {
    race(5);
}

#[test]
fn overlapping_scopes_are_refused_naming_the_other_run() {
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[
            ("src/a/value.txt", "1\n"),
            ("src/a/x.rs", ""),
            ("src/b/value.txt", "1\n"),
            ("lib/c.txt", ""),
        ],
    );
    write_exec(&w.path().join("agent.sh"), "#!/bin/sh\nsleep 30\n");
    let _d = w.daemon();
    let first = spec(&w, &repo, "a", "src/**", "");
    w.ok(&["start", first.to_str().unwrap()]);
    // Overlap on a tracked file.
    let o = w.arctl(&[
        "start",
        spec(&w, &repo, "b", "src/b/**", "").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("active run \"a\"") && err.contains("src/b/value.txt"),
        "{err}"
    );
    // Overlap through globs alone (no such files yet).
    let o = w.arctl(&[
        "start",
        spec(&w, &repo, "c", "src/new_dir/*.rs", "")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("active run \"a\"") && err.contains("src/new_dir/*.rs"),
        "{err}"
    );
    assert!(!w.state_dir.join("runs/c").exists());
    assert!(!git(&repo, &["branch"]).contains("autoresearch/c"));
    // Disjoint: fine.
    w.ok(&[
        "start",
        spec(&w, &repo, "d", "lib/**", "").to_str().unwrap(),
    ]);
    w.ok(&["stop", "a", "--now"]);
    w.ok(&["stop", "d", "--now"]);
}

fn process_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z');
        if !zombie && String::from_utf8_lossy(&cmd).contains(marker) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn limits_and_timeouts_crash_the_experiment_and_leave_no_process_behind() {
    let w = World::new();
    let repo = w.path().join("proj");
    let marker = format!("escapee-{}", std::process::id());
    let metric = format!(
        r#"#!/bin/sh
v=$(cat src/lim/value.txt)
case "$v" in
  alloc) python3 -c "b = bytearray(700*1024*1024); import time; time.sleep(30)";;
  hang) setsid sh -c 'exec sh ./{marker}.sh' & sleep 1000;;
esac
echo "$v"
"#
    );
    common::repo(
        &repo,
        &[
            ("metric.sh", metric.as_str()),
            ("src/lim/value.txt", "100\n"),
            (
                &format!("{marker}.sh"),
                &format!(
                    "echo $$ >> {}/escapee-started\nsleep 1000\n",
                    w.path().join("notes").display()
                ),
            ),
        ],
    );
    // The test's notes: outside the worktree, so the spec makes them writable.
    std::fs::create_dir_all(w.path().join("notes")).unwrap();
    let started = w.path().join("notes/escapee-started");
    let started = started.display();
    // Experiment 1 allocates past the limit, 2 hangs (its metric also leaves a setsid
    // grandchild), 3 forks an escaping grandchild from the proposer and improves.
    write_exec(
        &w.path().join("agent.sh"),
        &format!(
            r#"#!/bin/sh
case "$ARCTL_EXPERIMENT" in
  1) echo alloc > src/lim/value.txt;;
  2) echo hang > src/lim/value.txt;;
  3) (setsid sh -c 'exec sh ./{marker}.sh' &)
     # Exit only once the escapee runs (the sweep after the agent must find it alive).
     i=0; while [ "$(wc -l < {started} 2>/dev/null || echo 0)" -lt 4 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
     echo 90 > src/lim/value.txt;;
esac
"#
        ),
    );
    let s = w.path().join("lim.toml");
    write(
        &s,
        &format!(
            r#"
repo = "{}"
[metric]
command = "./metric.sh"
direction = "lower"
timeout = "3s"
[scope]
include = ["src/lim/**"]
[budget]
max_experiments = 3
[limits]
memory = "200MiB"
cpu_time = "20s"
[proposer]
command = "{}"
[sandbox]
writable = ["{}"]
"#,
            repo.display(),
            w.path().join("agent.sh").display(),
            w.path().join("notes").display()
        ),
    );
    let _d = w.daemon();
    w.ok(&["start", s.to_str().unwrap()]);
    let st = w.wait_finished("lim", Duration::from_secs(120));
    let rows = tsv_rows(&w.path().join("proj-lim/autoresearch-lim.tsv"));
    assert_eq!(rows[1][3], "crash", "{rows:?}\n{}", w.log("lim"));
    assert!(rows[1][4].contains("memory limit"), "{rows:?}");
    assert_eq!(rows[2][3], "crash");
    assert!(rows[2][4].contains("timed out"), "{rows:?}");
    assert_eq!(rows[3][3], "keep");
    assert_eq!(st["summary"]["best"], 90.0);
    // `status RUN` names the mechanism and the resource figures.
    assert!(
        st["limits_mechanism"].as_str().unwrap().contains("rlimit")
            || st["limits_mechanism"].as_str().unwrap().contains("cgroup")
    );
    let human = w.ok(&["status", "lim"]);
    assert!(
        human.contains("limits") && human.contains("peak RSS"),
        "{human}"
    );
    let journal = std::fs::read_to_string(w.state_dir.join("runs/lim/journal.jsonl")).unwrap();
    let alloc: serde_json::Value = serde_json::from_str(journal.lines().nth(1).unwrap()).unwrap();
    assert!(alloc["peak_rss"].as_u64().unwrap() > 0);
    // Nothing the run started survives: no escapee, no hanging sleep.
    let started = std::fs::read_to_string(w.path().join("notes/escapee-started")).unwrap();
    // The hanging metric ran three times (two quick fixes), the proposer once.
    assert_eq!(started.lines().count(), 4, "{started}");
    wait_until("no escaped process", Duration::from_secs(10), || {
        process_with(&marker).is_empty()
    });
}

#[test]
fn dedicated_cores_and_exclusive_measurements() {
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[
            ("src/x/value.txt", "100\n"),
            ("src/y/value.txt", "100\n"),
            ("src/z/value.txt", "100\n"),
        ],
    );
    write_exec(&w.path().join("agent.sh"), LOWER_AGENT);
    let cores = arctl::exec::available_cpus();
    let _d = w.daemon();
    // The metric sleeps so two runs' measurements would overlap if not serialised; it also
    // records the cores it may use.
    // The metric's notes are outside the worktree: the spec makes their folder writable.
    let notes = w.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    let extra = format!(
        "[limits]\ncpus = 1\nmeasure = \"exclusive\"\n[sandbox]\nwritable = [\"{}\"]\n",
        notes.display()
    );
    let mk = |id: &str| {
        let p = spec(&w, &repo, id, &format!("src/{id}/**"), &extra);
        let t = std::fs::read_to_string(&p).unwrap().replace(
            &format!("command = \"cat src/{id}/value.txt\""),
            &format!("command = \"grep Cpus_allowed_list /proc/self/status >> {}/cpus-{id}.txt; sleep 0.2; cat src/{id}/value.txt\"", notes.display()),
        );
        write(&p, &t);
        p
    };
    w.ok(&["start", mk("x").to_str().unwrap()]);
    if cores.len() >= 2 {
        w.ok(&["start", mk("y").to_str().unwrap()]);
    }
    // No cores left for a third run.
    let o = w.arctl(&["start", mk("z").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cores"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ids: Vec<&str> = if cores.len() >= 2 {
        vec!["x", "y"]
    } else {
        vec!["x"]
    };
    let mut intervals = Vec::new();
    let mut seen_cores = Vec::new();
    for id in &ids {
        w.wait_finished(id, Duration::from_secs(120));
        let pinned = std::fs::read_to_string(notes.join(format!("cpus-{id}.txt"))).unwrap();
        let lists: Vec<&str> = pinned
            .lines()
            .map(|l| l.split(':').nth(1).unwrap().trim())
            .collect();
        assert!(
            lists
                .iter()
                .all(|l| *l == lists[0] && !l.contains(',') && !l.contains('-')),
            "{id}: {pinned}"
        );
        seen_cores.push(lists[0].to_string());
        let journal =
            std::fs::read_to_string(w.state_dir.join(format!("runs/{id}/journal.jsonl"))).unwrap();
        for line in journal.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for m in v["measurements"].as_array().unwrap() {
                assert!(m["lock_wait_ms"].is_u64(), "{m}");
                intervals.push((
                    m["started_at_ms"].as_u64().unwrap(),
                    m["ended_at_ms"].as_u64().unwrap(),
                    id.to_string(),
                ));
            }
        }
    }
    if ids.len() == 2 {
        assert_ne!(
            seen_cores[0], seen_cores[1],
            "each run gets cores of its own"
        );
    }
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "measurements overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    // Once they end, their cores are free again.
    w.ok(&["start", mk("z").to_str().unwrap()]);
    w.wait_finished("z", Duration::from_secs(120));
}
