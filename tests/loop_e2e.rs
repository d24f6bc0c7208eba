//! One loop end to end: the real daemon, the real CLI, a real git repo, a scripted shell
//! agent whose experiments in turn improve, worsen, crash, hang, edit out of scope, commit
//! by themselves, break a guard, change nothing and detach HEAD.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const AGENT: &str = r#"#!/bin/sh
cd "$ARCTL_WORKTREE" || exit 9
d="$ARCTL_DESCRIPTION_FILE"
# Quick-fix calls: experiment 3 stays broken; experiment 10 gets fixed on the first call.
# The prompt must say which attempt it is.
if [ "$ARCTL_FIX_ATTEMPT" != "0" ]; then
  grep -q "QUICK FIX (attempt $ARCTL_FIX_ATTEMPT)" - || exit 7
  if [ "$ARCTL_EXPERIMENT" = "10" ]; then echo 50 > src/value.txt; fi
  exit 0
fi
grep -q "QUESTION" - || exit 8
case "$ARCTL_EXPERIMENT" in
  1) echo 90 > src/value.txt; echo "lower to 90" > "$d";;
  2) echo 120 > src/value.txt; echo "raise to 120" > "$d";;
  3) echo crash > src/value.txt; echo "break the metric" > "$d";;
  4) echo hang > src/value.txt; echo "hang the metric" > "$d";;
  5) echo 70 > src/value.txt; echo touched >> README.md; echo "edit the readme too" > "$d";;
  6) echo 80 > src/value.txt; mkdir -p src/new; echo x > src/new/file.txt
     git add -A && git -c user.name=a -c user.email=a@b commit -qm "agent's own commit"
     echo "commit by itself" > "$d";;
  7) echo 70 > src/value.txt; touch src/broken; echo "break the guard" > "$d";;
  8) : > "$ARCTL_RESULTS"; echo "nothing to do" > "$d";;  # and wipe the TSV: rows must survive
  9) git checkout -q --detach; echo 60 > src/value.txt; echo "detach head" > "$d";;
  10) echo crash > src/value.txt; echo "crash then fix" > "$d";;
esac
exit 0
"#;

/// `proj` in the world: `metric.sh` (prints the score in `src/value.txt`), that file at 100,
/// and `extra`.
fn value_repo(w: &World, extra: &[(&str, &str)]) -> PathBuf {
    let repo = w.path().join("proj");
    let mut files = vec![("metric.sh", METRIC_SH), ("src/value.txt", "100\n")];
    files.extend_from_slice(extra);
    common::repo(&repo, &files);
    repo
}

#[test]
fn scripted_agent_walks_every_outcome() {
    let w = World::new();
    let repo = value_repo(&w, &[("README.md", "readme\n")]);
    write_exec(&w.path().join("agent.sh"), AGENT);
    let spec = w.path().join("proj/loop.toml");
    write(
        &spec,
        &format!(
            r#"
id = "loop"
goal = "make the score lower"
[metric]
command = "./metric.sh"
regex = 'score: ([0-9.]+)'
direction = "lower"
[scope]
include = ["src/**"]
[[guard]]
name = "not-broken"
command = "test ! -e src/broken"
[budget]
max_experiments = 10
[proposer]
command = "{}"
timeout = "30s"
"#,
            w.path().join("agent.sh").display()
        ),
    );
    // The spec file itself is untracked in the main repo: commit it so the main tree is clean.
    git(&repo, &["add", "loop.toml"]);
    git(&repo, &["commit", "-qm", "spec"]);
    let main_head = git(&repo, &["rev-parse", "HEAD"]);

    let _d = w.daemon();
    let out = w.ok(&["start", spec.to_str().unwrap()]);
    assert_eq!(out.trim(), "loop");
    let wt = w.path().join("proj-loop");
    let st = w.wait_finished("loop", Duration::from_secs(120));
    assert_eq!(
        st["summary"]["state"],
        "finished",
        "{st:#}\n{}",
        w.log("loop")
    );

    // git worktree list shows it, on its branch.
    let list = git(&repo, &["worktree", "list"]);
    assert!(
        list.contains("proj-loop") && list.contains("[autoresearch/loop]"),
        "{list}"
    );

    let rows = tsv_rows(&wt.join("autoresearch-loop.tsv"));
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[2].clone(), r[3].clone()))
        .collect();
    let want = [
        ("0", "100.0", "baseline"),
        ("1", "90.0", "keep"),
        ("2", "120.0", "discard"),
        ("3", "0.0", "crash"),
        ("4", "0.0", "crash"),
        ("5", "0.0", "inspector-reject"),
        ("6", "80.0", "keep"),
        ("7", "70.0", "inspector-reject"),
        ("8", "0.0", "discard"),
        ("9", "0.0", "inspector-reject"),
        ("10", "50.0", "keep"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want, "TSV:\n{:#?}\nlog:\n{}", rows, w.log("loop"));
    assert_eq!(rows[1][4], "lower to 90");
    assert!(rows[4][4].contains("timed out"), "{:?}", rows[4]);
    assert!(
        rows[5][4].contains("out of scope: README.md"),
        "{:?}",
        rows[5]
    );
    assert!(
        rows[7][4].contains("guard \"not-broken\" failed"),
        "{:?}",
        rows[7]
    );
    assert!(rows[8][4].contains("no change"), "{:?}", rows[8]);
    assert_eq!(rows[8][1], "-");
    assert!(rows[9][4].contains("detached HEAD"), "{:?}", rows[9]);

    // Every TSV commit resolves; the branch tip is the last keep; discarded ones have refs.
    for r in &rows {
        if r[1] != "-" {
            git(&repo, &["cat-file", "-e", &format!("{}^{{commit}}", r[1])]);
        }
    }
    let tip = git(&repo, &["rev-parse", "autoresearch/loop"]);
    assert!(tip.starts_with(&rows[10][1]), "tip {tip} vs {:?}", rows[10]);
    assert_eq!(
        git(&repo, &["rev-parse", "refs/autoresearch/loop/discarded/2"])[..7],
        rows[2][1]
    );
    // Only keeps moved the branch: base + 3 experiment commits, each "experiment: ...".
    let log = git(&repo, &["log", "--format=%s", "main..autoresearch/loop"]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec![
            "experiment: crash then fix",
            "experiment: commit by itself",
            "experiment: lower to 90"
        ]
    );
    // The kept agent commit was folded: its new file is in the experiment commit.
    assert_eq!(
        std::fs::read_to_string(wt.join("src/new/file.txt")).unwrap(),
        "x\n"
    );
    // The worktree is clean and at the tip; the main worktree was never touched.
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(wt.join("src/value.txt")).unwrap(),
        "50\n"
    );
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), main_head);
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(repo.join("src/value.txt")).unwrap(),
        "100\n"
    );
    // TSV and log are excluded in the common dir.
    let exclude = std::fs::read_to_string(repo.join(".git/info/exclude")).unwrap();
    assert!(exclude.contains("autoresearch-loop.tsv") && exclude.contains("autoresearch-loop.log"));

    // The journal has one object per experiment with its why, then the final confirmation
    // of the best against the baseline (no TSV row); the state dir has a TSV copy.
    let journal = std::fs::read_to_string(w.state_dir.join("runs/loop/journal.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 12);
    assert_eq!(entries[11]["status"], "confirmation", "{}", entries[11]);
    assert!((entries[11]["decision"]["estimate"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    assert!((st["summary"]["change"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(st["summary"]["change_source"], "confirmation");
    assert_eq!(entries[3]["fix_attempts"], 2);
    assert_eq!(entries[10]["fix_attempts"], 1);
    assert!(entries[1]["reason"].as_str().unwrap().len() > 3);
    assert!(entries[1]["diff"]["insertions"].as_u64().unwrap() >= 1);
    assert_eq!(
        std::fs::read_to_string(w.state_dir.join("runs/loop/results.tsv")).unwrap(),
        std::fs::read_to_string(wt.join("autoresearch-loop.tsv")).unwrap()
    );

    // The status summary and the results command agree.
    let s = &st["summary"];
    assert_eq!(
        s["counts"],
        serde_json::json!({"kept": 3, "discarded": 2, "crashed": 2, "rejected": 3})
    );
    assert_eq!(s["baseline"], 100.0);
    assert_eq!(s["best"], 50.0);
    assert_eq!(s["mode"], "deterministic");
    let res = w.json(&["results", "loop", "--json"]);
    assert_eq!(res["rows"].as_array().unwrap().len(), 11);
    assert!((res["rows"][1]["change"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    let human = w.ok(&["results", "loop"]);
    assert!(
        human.contains("lower to 90") && human.contains("+10.00%"),
        "{human}"
    );
    let log = w.ok(&["log", "loop"]);
    assert!(
        log.contains("baseline") && log.contains("finished"),
        "{log}"
    );
}

#[test]
fn patches_proposer_tries_each_patch_once_in_order() {
    let w = World::new();
    value_repo(&w, &[]);
    let patch = |from: &str, to: &str| {
        format!("--- a/src/value.txt\n+++ b/src/value.txt\n@@ -1 +1 @@\n-{from}\n+{to}\n")
    };
    let pdir = w.path().join("hyp");
    write(
        &pdir.join("01-lower.patch"),
        &format!("lower the value to 80\n{}", patch("100", "80")),
    );
    write(&pdir.join("02-stale.patch"), &patch("100", "70")); // no longer applies after 01
    write(
        &pdir.join("03-higher.patch"),
        &format!("Subject: [PATCH] raise it\n\n{}", patch("80", "95")),
    );
    write(&pdir.join("notes.txt"), "not a patch");
    let _d = w.daemon();
    let st = start_patches_run(&w);
    assert_eq!(st["summary"]["state"], "finished");
    assert!(
        st["summary"]["stop_reason"]
            .as_str()
            .unwrap()
            .contains("all 3 patches tried"),
        "{st:#}"
    );
    let rows = tsv_rows(&w.path().join("proj-p/autoresearch-p.tsv"));
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[2].as_str(), r[3].as_str(), r[4].as_str()))
        .collect();
    assert_eq!(got[0], ("100.0", "baseline", "baseline"));
    assert_eq!(got[1], ("80.0", "keep", "lower the value to 80"));
    assert_eq!(got[2].1, "crash");
    assert!(
        got[2].2.contains("02-stale.patch") && got[2].2.contains("does not apply"),
        "{:?}",
        got[2]
    );
    assert_eq!(got[3], ("95.0", "discard", "raise it"));
    assert_eq!(rows.len(), 4);
    assert_eq!(
        std::fs::read_to_string(w.path().join("proj-p/src/value.txt")).unwrap(),
        "80\n"
    );
}

/// A built-in proposer writes the worktree from the daemon itself, where no child's start
/// voids what the last metric run's walk found: after a keep, an out-of-scope patch must
/// still be reverted in full (the walk-free revert must not trust that walk).
#[test]
fn a_rejected_patch_after_a_keep_is_reverted_in_full() {
    let w = World::new();
    value_repo(&w, &[("README.md", "readme\n")]);
    let pdir = w.path().join("hyp");
    write(
        &pdir.join("01-lower.patch"),
        "lower the value to 80\n--- a/src/value.txt\n+++ b/src/value.txt\n@@ -1 +1 @@\n-100\n+80\n",
    );
    write(
        &pdir.join("02-readme.patch"),
        "edit the readme\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-readme\n+edited\n",
    );
    write(
        &pdir.join("03-lower.patch"),
        "lower it to 60\n--- a/src/value.txt\n+++ b/src/value.txt\n@@ -1 +1 @@\n-80\n+60\n",
    );
    let _d = w.daemon();
    let st = start_patches_run(&w);
    assert_eq!(st["summary"]["state"], "finished", "{st:#}");
    let rows = tsv_rows(&w.path().join("proj-p/autoresearch-p.tsv"));
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[2].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(got[1], ("80.0", "keep"), "{rows:?}");
    assert_eq!(got[2].1, "inspector-reject", "{rows:?}");
    assert_eq!(got[3], ("60.0", "keep"), "{rows:?}");
    let wt = w.path().join("proj-p");
    assert_eq!(
        std::fs::read_to_string(wt.join("README.md")).unwrap(),
        "readme\n"
    );
    assert_eq!(git(&wt, &["status", "--porcelain"]).trim(), "");
}

/// Start run "p" of `proj` with the patches in `hyp` (scope `src/*.txt`, metric
/// `./metric.sh`, lower is better) and wait for its end: its status.
fn start_patches_run(w: &World) -> serde_json::Value {
    let spec = w.path().join("p.toml");
    write(
        &spec,
        r#"
repo = "proj"
[metric]
command = "./metric.sh"
direction = "lower"
[scope]
include = ["src/*.txt"]
[proposer]
kind = "patches"
dir = "hyp"
"#,
    );
    assert_eq!(w.ok(&["start", spec.to_str().unwrap()]).trim(), "p");
    w.wait_finished("p", Duration::from_secs(60))
}

#[test]
fn params_proposer_hill_climbs_to_the_optimum() {
    let w = World::new();
    let repo = w.path().join("proj");
    let metric = "#!/bin/sh\nn=$(sed -n 's/^N = \\([0-9]*\\)$/\\1/p' src/config.py)\necho \"distance $(( (n-7)*(n-7) ))\"\n";
    common::repo(
        &repo,
        &[
            ("metric.sh", metric),
            ("src/config.py", "# tuning\nN = 5\n"),
        ],
    );
    let spec = repo.join("params.toml");
    write(
        &spec,
        r#"
[metric]
command = "./metric.sh"
direction = "lower"
[scope]
include = ["src/config.py"]
[budget]
max_experiments = 6
[proposer]
kind = "params"
seed = 42
[[proposer.param]]
file = "src/config.py"
regex = 'N = (\d+)'
min = 1
max = 9
step = 1
"#,
    );
    let _d = w.daemon();
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished("params", Duration::from_secs(60));
    assert_eq!(st["summary"]["best"], 0.0, "{st:#}\n{}", w.log("params"));
    let rows = tsv_rows(&w.path().join("proj-params/autoresearch-params.tsv"));
    assert_eq!(rows.len(), 7);
    // Never the same combination twice.
    let descs: Vec<&String> = rows.iter().skip(1).map(|r| &r[4]).collect();
    let mut uniq = descs.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), descs.len(), "{descs:?}");
    assert!(
        std::fs::read_to_string(w.path().join("proj-params/src/config.py"))
            .unwrap()
            .contains("N = 7")
    );
}

#[test]
fn start_refuses_and_creates_nothing_when_the_repo_or_base_is_wrong() {
    let w = World::new();
    let _d = w.daemon();
    let notrepo = w.path().join("plain");
    std::fs::create_dir_all(&notrepo).unwrap();
    let spec = |dir: &std::path::Path, extra: &str| {
        let p = dir.join("s.toml");
        write(
            &p,
            &format!("{extra}\n[metric]\ncommand = \"echo 1\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\ncommand = \"true\"\n"),
        );
        p
    };
    let o = w.arctl(&["start", spec(&notrepo, "").to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a git repository"));

    let repo = w.path().join("r");
    common::repo(&repo, &[("src/a.txt", "1\n")]);
    let o = w.arctl(&["start", spec(&repo, "base = \"nope\"").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("base \"nope\" does not exist"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Branch taken.
    git(&repo, &["branch", "autoresearch/s"]);
    let o = w.arctl(&["start", spec(&repo, "").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("branch autoresearch/s already exists"));
    git(&repo, &["branch", "-D", "autoresearch/s"]);

    // Path taken.
    std::fs::create_dir_all(w.path().join("r-s")).unwrap();
    let o = w.arctl(&["start", spec(&repo, "").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    std::fs::remove_dir_all(w.path().join("r-s")).unwrap();

    // Nothing was created by the refusals.
    assert!(!w.state_dir.join("runs/s").exists());
    assert!(!git(&repo, &["branch", "--list"]).contains("autoresearch"));
    assert_eq!(git(&repo, &["worktree", "list"]).lines().count(), 1);
    let st = w.json(&["status", "--json"]);
    assert_eq!(st["runs"].as_array().unwrap().len(), 0);

    // Then it works, and the id is taken for a second start.
    w.ok(&["start", spec(&repo, "").to_str().unwrap()]);
    let o = w.arctl(&["start", spec(&repo, "").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("run id \"s\" is taken"));
}

#[test]
fn stop_pause_resume() {
    let w = World::new();
    let repo = value_repo(&w, &[]);
    // An agent that slowly lowers the value by one each time.
    write_exec(
        &w.path().join("agent.sh"),
        "#!/bin/sh\nv=$(cat src/value.txt); echo $((v-1)) > src/value.txt; echo \"to $((v-1))\" > \"$ARCTL_DESCRIPTION_FILE\"; sleep 0.2\n",
    );
    let spec = repo.join("slow.toml");
    write(
        &spec,
        &format!(
            "[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("agent.sh").display()
        ),
    );
    let _d = w.daemon();
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_run("slow", Duration::from_secs(30), |s| {
        s["experiments"].as_u64().unwrap_or(0) >= 2
    });
    w.ok(&["pause", "slow"]);
    let st = w.wait_run("slow", Duration::from_secs(30), |s| s["state"] == "paused");
    let n = st["summary"]["experiments"].as_u64().unwrap();
    // Paused: no progress (checked over several status polls, not a bare sleep).
    for _ in 0..5 {
        let v = w.json(&["status", "slow", "--json"]);
        assert_eq!(v["summary"]["experiments"].as_u64().unwrap(), n);
        assert_eq!(v["summary"]["state"], "paused");
    }
    w.ok(&["resume", "slow"]);
    w.wait_run("slow", Duration::from_secs(30), |s| {
        s["experiments"].as_u64().unwrap_or(0) >= n + 2
    });
    w.ok(&["stop", "slow", "--now"]);
    let st = w.wait_run("slow", Duration::from_secs(30), |s| s["state"] == "stopped");
    let rows = tsv_rows(&w.path().join("proj-slow/autoresearch-slow.tsv"));
    assert_eq!(
        rows.len() as u64,
        st["summary"]["experiments"].as_u64().unwrap() + 1
    );
    // Rows are numbered without gaps, every one a keep, and the tree is clean at the tip.
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], i.to_string());
    }
    let wt = w.path().join("proj-slow");
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    let best = st["summary"]["best"].as_f64().unwrap();
    assert_eq!(
        std::fs::read_to_string(wt.join("src/value.txt"))
            .unwrap()
            .trim(),
        format!("{best}")
    );
    // Stopping an unknown run is bad input.
    let o = w.arctl(&["stop", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_stopping_run_never_shows_running_again() {
    let w = World::new();
    let repo = value_repo(&w, &[]);
    // An agent and a metric that take a while: the stop arrives while the agent proposes,
    // and the experiment then takes long enough to be seen in every state it shows.
    write_exec(
        &w.path().join("agent.sh"),
        "#!/bin/sh\nsleep 1.5; v=$(cat src/value.txt); echo $((v-1)) > src/value.txt; echo \"to $((v-1))\" > \"$ARCTL_DESCRIPTION_FILE\"\n",
    );
    let spec = repo.join("halt.toml");
    write(
        &spec,
        &format!(
            "[metric]\ncommand = \"sleep 0.5; ./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("agent.sh").display()
        ),
    );
    let _d = w.daemon();
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_run("halt", Duration::from_secs(30), |s| {
        s["experiments"].as_u64().unwrap_or(0) >= 1 && s["step"] == "proposing"
    });
    w.ok(&["stop", "halt"]);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = w.json(&["status", "halt", "--json"]);
        let state = v["summary"]["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "stopped" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stopped: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Right after the request it shows `stopping`, then only `stopped`.
    assert_eq!(seen, ["stopping", "stopped"], "states seen after the stop");
    // The experiment under way finished (stop without --now), and is recorded.
    let rows = tsv_rows(&w.path().join("proj-halt/autoresearch-halt.tsv"));
    assert!(rows.len() >= 2, "{rows:?}");
}
