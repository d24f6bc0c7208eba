//! Crash safety: the daemon killed with SIGKILL at random moments and restarted loses no
//! experiment, duplicates none, and leaves every branch and worktree consistent.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

/// Each experiment lowers, raises or keeps its run's value by a pattern, after a short nap
/// that widens the windows a kill can land in.
const SOAK_AGENT: &str = r#"#!/bin/sh
f="src/$ARCTL_RUN_ID/value.txt"
v=$(cat "$f")
case $((ARCTL_EXPERIMENT % 4)) in
  0) n=$((v - 3));;
  1) n=$((v + 5));;
  2) n=$((v - 1));;
  3) echo "exp $ARCTL_EXPERIMENT" >> "src/$ARCTL_RUN_ID/notes.txt"; n=$v;;
esac
sleep 0.1$((ARCTL_EXPERIMENT % 7))
echo "$n" > "$f"
echo "set $n" > "$ARCTL_DESCRIPTION_FILE"
"#;

fn check_run(w: &World, repo: &Path, id: &str, budget: usize) {
    let wt = w.path().join(format!("proj-{id}"));
    let rows = tsv_rows(&wt.join(format!("autoresearch-{id}.tsv")));
    let numbers: Vec<usize> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(
        numbers,
        (0..=budget).collect::<Vec<_>>(),
        "{id}: one row per experiment\n{rows:#?}"
    );
    for r in &rows {
        if r[1] != "-" {
            git(repo, &["cat-file", "-e", &format!("{}^{{commit}}", r[1])]);
        }
    }
    let last_kept = rows
        .iter()
        .rev()
        .find(|r| r[3] == "keep" || r[3] == "baseline")
        .unwrap();
    let tip = git(repo, &["rev-parse", &format!("autoresearch/{id}")]);
    assert!(
        tip.starts_with(&last_kept[1]),
        "{id}: tip {tip} is not the last kept {:?}",
        last_kept
    );
    assert_eq!(
        git(&wt, &["status", "--porcelain"]),
        "",
        "{id}: worktree not clean"
    );
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]), tip);
    // The state dir's copy and the journal agree with the worktree's TSV.
    let copy = std::fs::read_to_string(w.state_dir.join(format!("runs/{id}/results.tsv"))).unwrap();
    assert_eq!(
        copy,
        std::fs::read_to_string(wt.join(format!("autoresearch-{id}.tsv"))).unwrap()
    );
    let journal =
        std::fs::read_to_string(w.state_dir.join(format!("runs/{id}/journal.jsonl"))).unwrap();
    // One line per experiment, and at most one final confirmation (never a duplicate).
    let confirmations = journal
        .lines()
        .filter(|l| l.contains(r#""status":"confirmation""#))
        .count();
    assert!(confirmations <= 1, "{id}: {confirmations} confirmations");
    assert_eq!(
        journal.lines().count() - confirmations,
        budget + 1,
        "{id}: journal lines"
    );
}

fn soak(runs: usize, budget: usize, kills: usize) {
    let seed: u64 = std::env::var("ARCTL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("soak seed: {seed} (rerun with ARCTL_SOAK_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let w = World::new();
    let repo = w.path().join("proj");
    let ids: Vec<String> = (0..runs).map(|i| format!("soak{i}")).collect();
    let files: Vec<(String, String)> = ids
        .iter()
        .map(|id| (format!("src/{id}/value.txt"), "1000\n".into()))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    common::repo(&repo, &files);
    write_exec(&w.path().join("agent.sh"), SOAK_AGENT);
    let mut daemon = DaemonProcess::spawn(&w);
    for id in &ids {
        let spec = w.path().join(format!("{id}.toml"));
        write(
            &spec,
            &format!(
                "id = \"{id}\"\nrepo = \"proj\"\n[metric]\ncommand = \"cat src/{id}/value.txt\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/{id}/**\"]\n[budget]\nmax_experiments = {budget}\n[proposer]\ncommand = \"{}\"\n",
                w.path().join("agent.sh").display()
            ),
        );
        w.ok(&["start", spec.to_str().unwrap()]);
    }
    let tag_root = arctl::run::Global::new(w.state_dir.clone(), 1).tag_root;
    for k in 0..kills {
        let wait = Duration::from_millis(rng.gen_range(150..1200));
        let t = Instant::now();
        while t.elapsed() < wait {
            // Keep the clients busy too: status during the run.
            let _ = w.arctl(&["--no-autostart", "status", "--json"]);
        }
        daemon.signal(nix::sys::signal::Signal::SIGKILL);
        daemon.wait();
        let done: Vec<String> = ids
            .iter()
            .map(|id| {
                std::fs::read_to_string(w.state_dir.join(format!("runs/{id}/journal.jsonl")))
                    .unwrap_or_default()
                    .lines()
                    .count()
                    .to_string()
            })
            .collect();
        eprintln!("kill {k} after {wait:?}; journal lines: {}", done.join(" "));
        daemon = DaemonProcess::spawn(&w);
    }
    for id in &ids {
        let st = w.wait_finished(id, Duration::from_secs(300));
        assert_eq!(st["summary"]["state"], "finished", "{id}: {st:#}");
        assert_eq!(
            st["summary"]["experiments"].as_u64().unwrap() as usize,
            budget
        );
    }
    let status = w.json(&["status", "--json"]);
    assert!(
        status["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["recovered_at_ms"].is_u64()),
        "status says runs were recovered"
    );
    let recoveries: usize = ids
        .iter()
        .map(|id| w.log(id).matches("recovery:").count())
        .sum();
    eprintln!("recovery notes in the run logs: {recoveries}");
    for id in &ids {
        check_run(&w, &repo, id, budget);
    }
    // Nothing any daemon started is still running.
    assert!(
        arctl::exec::tagged_processes(&tag_root).is_empty(),
        "leftover processes"
    );
    w.ok(&["shutdown"]);
    daemon.wait();
}

#[test]
fn soak_kill_9_ten_times_loses_nothing() {
    if std::env::var("ARCTL_SOAK_LONG").is_ok() {
        soak(5, 100, 50);
    } else {
        soak(3, 30, 10);
    }
}

#[test]
fn unreadable_and_newer_state_files_are_reported_not_lost() {
    let w = World::new();
    let runs = w.state_dir.join("runs");
    write(&runs.join("broken/run.json"), "{ this is not json");
    write(
        &runs.join("future/run.json"),
        r#"{"schema": 99, "id": "future"}"#,
    );
    let _d = w.daemon();
    let st = w.json(&["status", "--json"]);
    let problems: Vec<String> = st["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("broken") && p.contains("moved aside")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("future") && p.contains("newer than this arctl")),
        "{problems:?}"
    );
    // The broken file is kept aside; the newer one is left untouched for a newer arctl.
    let aside: Vec<_> = std::fs::read_dir(runs.join("broken"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        aside.iter().any(|n| n.starts_with("run.json.corrupt-")),
        "{aside:?}"
    );
    assert!(runs.join("future/run.json").exists());
    let o = w.arctl(&["status"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("problem"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_state_dir_from_version_1_still_loads() {
    // tests/fixtures/state-v1 was written by this version (schema 1): it must load forever.
    let w = World::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1");
    copy_dir(&fixture, &w.state_dir);
    let _d = w.daemon();
    let st = w.json(&["status", "--json"]);
    assert_eq!(st["problems"], serde_json::json!([]), "{st:#}");
    let run = &st["runs"][0];
    assert_eq!(run["id"], "fixture");
    assert_eq!(run["state"], "finished");
    assert_eq!(run["counts"]["kept"], 2);
    let res = w.json(&["results", "fixture", "--json"]);
    assert_eq!(res["rows"].as_array().unwrap().len(), 5);
    assert_eq!(res["rows"][2]["status"], "discard");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Run `v` in a fresh world: a repo with one value, a slow proposer (`agent`: it lowers the
/// value, then does `extra` and sleeps a second, so a stop lands while it runs) and a budget.
/// Returns the world, the repo and the spec's path.
fn slow_run(extra: &str, budget: usize) -> (World, std::path::PathBuf, std::path::PathBuf) {
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(&repo, &[("src/v/value.txt", "100\n")]);
    write_exec(
        &w.path().join("agent.sh"),
        &format!("#!/bin/sh\nv=$(cat src/v/value.txt); echo $((v-1)) > src/v/value.txt; {extra}sleep 1\n"),
    );
    let spec = w.path().join("v.toml");
    write(
        &spec,
        &format!(
            "repo = \"proj\"\n[metric]\ncommand = \"cat src/v/value.txt\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/v/**\"]\n[budget]\nmax_experiments = {budget}\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("agent.sh").display()
        ),
    );
    (w, repo, spec)
}

#[test]
fn sigterm_during_an_experiment_reverts_it_and_the_run_resumes() {
    // The shutdown lands while the proposer runs.
    let (w, repo, spec) = slow_run("touch src/v/untracked-$ARCTL_EXPERIMENT; ", 3);
    let mut daemon = DaemonProcess::spawn(&w);
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_run("v", Duration::from_secs(30), |s| s["step"] == "proposing");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.wait().success());
    // Reverted: clean tree at the last kept commit, no row for the interrupted experiment.
    let wt = w.path().join("proj-v");
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    let rows = tsv_rows(&wt.join("autoresearch-v.tsv"));
    let st = std::fs::read_to_string(w.state_dir.join("runs/v/run.json")).unwrap();
    assert!(st.contains("\"state\": \"running\""), "{st}");
    assert!(rows.len() < 4);
    // Starting again resumes and completes the budget.
    let mut daemon = DaemonProcess::spawn(&w);
    let st = w.wait_finished("v", Duration::from_secs(60));
    assert_eq!(st["summary"]["state"], "finished");
    check_run(&w, &repo, "v", 3);
    w.ok(&["shutdown"]);
    daemon.wait();
}

/// The experiment under way is marked without a durable write; a kill -9 during it is named
/// by the recovery, and nothing is lost or doubled.
#[test]
fn a_kill_during_an_experiment_names_it_in_the_recovery() {
    let (w, repo, spec) = slow_run("", 4);
    let mut daemon = DaemonProcess::spawn(&w);
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_run("v", Duration::from_secs(30), |s| {
        s["step"] == "proposing" && s["experiments"].as_u64() >= Some(2)
    });
    let marked = std::fs::read_to_string(w.state_dir.join("runs/v/inflight")).unwrap();
    let n: u32 = marked.trim().parse().unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait();
    let journal = std::fs::read_to_string(w.state_dir.join("runs/v/journal.jsonl")).unwrap();
    let line_of = |k: u32| format!("\"experiment\":{k},");
    assert!(journal.contains(&line_of(n - 1)), "{journal}");
    assert!(
        !journal.contains(&line_of(n)),
        "experiment {n} was under way: {journal}"
    );
    let mut daemon = DaemonProcess::spawn(&w);
    let st = w.wait_finished("v", Duration::from_secs(60));
    assert_eq!(st["summary"]["state"], "finished");
    let log = w.log("v");
    assert!(
        log.contains(&format!(
            "recovery: experiment {n} was interrupted and will run again"
        )),
        "{log}"
    );
    check_run(&w, &repo, "v", 4);
    w.ok(&["shutdown"]);
    daemon.wait();
}
