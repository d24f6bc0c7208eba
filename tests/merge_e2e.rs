//! Merge, cleanup, report and plot end to end: the real daemon (in-process), the real CLI,
//! a real repo with three disjoint scopes (`a/`, `b/`, `c/`) and a deterministic metric
//! `score = min(a, b) + c` (lower is better), so that
//! - run a (a: 100 → 60, gain 20%) and run b (b: 100 → 80, gain 10%) each help alone, but once
//!   a has landed, b's change no longer moves min(a, b): its gain disappears on top;
//! - run c (c: 100 → 90, gain 5%) conflicts when the user commits their own change to
//!   c/v.txt on main after the runs started (the realistic way two disjoint-scope branches
//!   conflict: the base moved under one of them).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const METRIC: &str = r#"#!/bin/sh
a=$(cat a/v.txt); b=$(cat b/v.txt); c=$(cat c/v.txt)
for v in "$a" "$b" "$c"; do
  case "$v" in ''|*[!0-9]*) echo "not a number: $v" >&2; exit 1;; esac
done
if [ "$a" -lt "$b" ]; then m=$a; else m=$b; fi
echo "score: $((m + c))"
"#;

const T: Duration = Duration::from_secs(90);

fn patch(file: &str, from: &str, to: &str) -> String {
    format!("--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-{from}\n+{to}\n")
}

/// The project: metric + one value file per scope, on main.
fn project(w: &World) -> PathBuf {
    project_with(w, METRIC)
}

fn project_with(w: &World, metric: &str) -> PathBuf {
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[
            ("metric.sh", metric),
            ("a/v.txt", "100\n"),
            ("b/v.txt", "100\n"),
            ("c/v.txt", "100\n"),
            ("d/v.txt", "100\n"),
            ("README.md", "readme\n"),
        ],
    );
    repo
}

/// A spec (outside the repo) for run `id` editing `dir/**`, trying `patches` in order.
fn patches_spec(w: &World, id: &str, dir: &str, patches: &[(&str, String)]) -> PathBuf {
    let specs = w.path().join("specs");
    let pdir = specs.join(format!("{id}-patches"));
    for (name, text) in patches {
        write(&pdir.join(name), text);
    }
    let spec = specs.join(format!("{id}.toml"));
    write(
        &spec,
        &format!(
            r#"
id = "{id}"
repo = "../proj"
goal = "lower the score via {dir}/"
[metric]
command = "./metric.sh"
regex = 'score: ([0-9.]+)'
direction = "lower"
[scope]
include = ["{dir}/**"]
[proposer]
kind = "patches"
dir = "{id}-patches"
"#
        ),
    );
    spec
}

/// A patches run `id` editing `id/**` with one patch: `id/v.txt` from 100 to `to`.
fn lower_spec(w: &World, id: &str, to: u32) -> PathBuf {
    let file = format!("{id}/v.txt");
    let p = patch(&file, "100", &to.to_string());
    patches_spec(
        w,
        id,
        id,
        &[("01.patch", format!("lower {id} to {to}\n{p}"))],
    )
}

fn agent_spec(w: &World, id: &str, dir: &str, agent: &str, extra: &str) -> PathBuf {
    let specs = w.path().join("specs");
    let script = specs.join(format!("{id}-agent.sh"));
    write_exec(&script, agent);
    let spec = specs.join(format!("{id}.toml"));
    write(
        &spec,
        &format!(
            r#"
id = "{id}"
repo = "../proj"
goal = "lower the score via {dir}/"
[metric]
command = "./metric.sh"
regex = 'score: ([0-9.]+)'
direction = "lower"
[scope]
include = ["{dir}/**"]
{extra}
[proposer]
command = "{}"
timeout = "120s"
"#,
            script.display()
        ),
    );
    spec
}

/// Runs a (two keeps, one discard), b and c, started and finished.
fn three_runs(w: &World) {
    let a = patches_spec(
        w,
        "a",
        "a",
        &[
            (
                "01.patch",
                format!("lower a to 80\n{}", patch("a/v.txt", "100", "80")),
            ),
            (
                "02.patch",
                format!("raise a to 90\n{}", patch("a/v.txt", "80", "90")),
            ),
            (
                "03.patch",
                format!("lower a to 60\n{}", patch("a/v.txt", "80", "60")),
            ),
        ],
    );
    let b = lower_spec(w, "b", 80);
    let c = lower_spec(w, "c", 90);
    for s in [&a, &b, &c] {
        w.ok(&["start", s.to_str().unwrap()]);
    }
    for id in ["a", "b", "c"] {
        let st = w.wait_finished(id, T);
        assert_eq!(st["summary"]["state"], "finished", "{st:#}\n{}", w.log(id));
    }
    let best = |id: &str| {
        w.json(&["status", id, "--json"])["summary"]["best"]
            .as_f64()
            .unwrap()
    };
    assert_eq!((best("a"), best("b"), best("c")), (160.0, 180.0, 190.0));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn record(w: &World, id: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&read(&w.state_dir.join("runs").join(id).join("run.json"))).unwrap();
    // Versioned files wrap the record.
    if v.get("body").is_some() {
        v["body"].clone()
    } else {
        v
    }
}

/// Everything `--dry-run` must leave alone.
fn repo_state(repo: &Path) -> String {
    [
        git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"]),
        git(repo, &["worktree", "list", "--porcelain"]),
        git(repo, &["status", "--porcelain"]),
        read(&repo.join("a/v.txt")),
        read(&repo.join("c/v.txt")),
    ]
    .join("\n")
}

#[test]
fn merge_orders_by_gain_remeasures_on_top_and_skips_conflicts_and_vanished_gains() {
    let w = World::new();
    let repo = project(&w);
    let _d = w.daemon();
    three_runs(&w);

    // The user keeps working on main after the runs started: their own change to c/v.txt.
    write(&repo.join("c/v.txt"), "97\n");
    git(&repo, &["commit", "-qam", "user: tune c"]);
    let user_head = git(&repo, &["rev-parse", "HEAD"]);
    // An untracked file of the user's must neither block the merge nor be touched by it.
    write(&repo.join("notes.txt"), "mine\n");

    // A dry run plans without changing anything.
    let before = repo_state(&repo);
    let plan = w.json(&["merge", "--dry-run", "--json"]);
    assert_eq!(repo_state(&repo), before, "--dry-run changed the repo");
    let rows = plan["rows"].as_array().unwrap();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["run"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", "would_merge"),
            ("b", "would_merge"),
            ("c", "would_skip")
        ],
        "{plan:#}"
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["target"], "main");
    assert_eq!(rows[0]["order"], 1);
    assert!((rows[0]["gain_alone"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert_eq!(rows[0]["method"], "merge-commit");
    assert_eq!(
        rows[0]["remeasured"], true,
        "main moved: a's tree on top of it was never measured"
    );
    assert_eq!(rows[2]["conflicts"], serde_json::json!(["c/v.txt"]));
    let human = w.ok(&["merge", "--dry-run"]);
    assert!(
        human.contains("dry run")
            && human.contains("would skip")
            && human.contains("conflict in c/v.txt"),
        "{human}"
    );
    assert_eq!(repo_state(&repo), before);
    for id in ["a", "b", "c"] {
        assert_eq!(record(&w, id)["merged"], false);
    }

    // Refused while main has uncommitted changes to a tracked file; nothing moves.
    write(&repo.join("README.md"), "edited\n");
    let o = w.arctl(&["merge"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("uncommitted changes") && err.contains("README.md") && err.contains("main"),
        "{err}"
    );
    assert_eq!(git(&repo, &["rev-parse", "main"]), user_head);
    git(&repo, &["checkout", "--", "README.md"]);

    // The merge: a lands (re-measured on top of the moved main), b's gain is gone once a is
    // in, c conflicts with the user's commit.
    let m = w.json(&["merge", "--json"]);
    let rows = m["rows"].as_array().unwrap();
    let got: Vec<(&str, u64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["run"].as_str().unwrap(),
                r["order"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("a", 1, "merged"), ("b", 2, "skipped"), ("c", 3, "skipped")],
        "{m:#}"
    );
    // a: 197 → 157 on top of the user's main.
    assert!(
        (rows[0]["gain_on_top"].as_f64().unwrap() - 40.0 / 197.0).abs() < 1e-9,
        "{m:#}"
    );
    assert_eq!(rows[0]["on_top"]["best_estimate"], 197.0);
    assert_eq!(rows[0]["on_top"]["candidate_estimate"], 157.0);
    // b: measured on top (157 vs 157): no longer improves.
    assert_eq!(rows[1]["remeasured"], true);
    assert_eq!(rows[1]["gain_on_top"], 0.0);
    assert_eq!(rows[1]["on_top"]["candidate_estimate"], 157.0);
    assert!(
        rows[1]["reason"]
            .as_str()
            .unwrap()
            .contains("no longer improves"),
        "{m:#}"
    );
    // c: the conflict names the file; its branch stays.
    assert_eq!(rows[2]["conflicts"], serde_json::json!(["c/v.txt"]));
    assert!(
        rows[2]["reason"]
            .as_str()
            .unwrap()
            .contains("conflict in c/v.txt"),
        "{m:#}"
    );
    assert_eq!(m["before"].as_str().unwrap(), user_head);

    // main: a merge commit of the user's commit and a's best; checked out, clean, on disk.
    let head = git(&repo, &["rev-parse", "main"]);
    assert_eq!(m["after"].as_str().unwrap(), head);
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    let a_tip = git(&repo, &["rev-parse", "autoresearch/a"]);
    assert_eq!(git(&repo, &["rev-parse", "main^1"]), user_head);
    assert_eq!(git(&repo, &["rev-parse", "main^2"]), a_tip);
    assert_eq!(read(&repo.join("a/v.txt")), "60\n");
    assert_eq!(read(&repo.join("b/v.txt")), "100\n");
    assert_eq!(read(&repo.join("c/v.txt")), "97\n");
    assert_eq!(git(&repo, &["status", "--porcelain"]), "?? notes.txt");
    assert_eq!(read(&repo.join("notes.txt")), "mine\n");
    let msg = git(&repo, &["log", "-1", "--format=%B", "main"]);
    assert!(
        msg.contains("autoresearch/a")
            && msg.contains("lower a to 60")
            && msg.contains("on top of main"),
        "{msg}"
    );
    // The records say who landed; the other branches stay for manual work.
    assert_eq!(record(&w, "a")["merged"], true);
    assert_eq!(record(&w, "b")["merged"], false);
    assert_eq!(record(&w, "c")["merged"], false);
    assert!(!git(
        &repo,
        &["branch", "--list", "autoresearch/b", "autoresearch/c"]
    )
    .is_empty());
    assert_eq!(
        git(&repo, &["branch", "--list", "autoresearch/*"])
            .lines()
            .count(),
        3
    );
    // No temporary worktree is left behind; the re-measurement is in the run's log.
    assert_eq!(
        git(&repo, &["worktree", "list"]).lines().count(),
        4,
        "{}",
        git(&repo, &["worktree", "list"])
    );
    assert!(
        w.log("b").contains("merge: re-measuring on top of"),
        "{}",
        w.log("b")
    );

    // The human table: one row per run, in order, with both gains and the why.
    let again = w.ok(&["merge", "b", "c"]);
    let lines: Vec<&str> = again.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("1")
            && l.contains(" b ")
            && l.contains("+10.00%")
            && l.contains("skipped")),
        "{again}"
    );
    assert!(again.contains("conflict in c/v.txt"), "{again}");
    assert_eq!(git(&repo, &["rev-parse", "main"]), head);

    // Unknown and (below) active runs are bad input.
    let o = w.arctl(&["merge", "nope"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn merge_fast_forwards_then_squashes_with_the_kept_experiments() {
    let w = World::new();
    let repo = project(&w);
    let _d = w.daemon();
    three_runs(&w);
    let initial = git(&repo, &["rev-parse", "main"]);

    // c alone: a fast-forward to exactly the tree its run measured, no re-measurement.
    let m = w.json(&["merge", "c", "--json"]);
    assert_eq!(m["rows"][0]["status"], "merged", "{m:#}");
    assert_eq!(m["rows"][0]["method"], "fast-forward");
    assert_eq!(m["rows"][0]["remeasured"], false);
    assert!(m["rows"][0]["gain_on_top"].is_null());
    let c_tip = git(&repo, &["rev-parse", "autoresearch/c"]);
    assert_eq!(git(&repo, &["rev-parse", "main"]), c_tip);
    assert_eq!(read(&repo.join("c/v.txt")), "90\n");
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");

    // a squashed on top: re-measured (190 → 150), one commit listing its kept experiments.
    let m = w.json(&["merge", "a", "--squash", "--json"]);
    let r = &m["rows"][0];
    assert_eq!(r["status"], "merged", "{m:#}");
    assert_eq!(r["method"], "squash");
    assert_eq!(r["remeasured"], true);
    assert_eq!(r["on_top"]["best_estimate"], 190.0);
    assert_eq!(r["on_top"]["candidate_estimate"], 150.0);
    let head = git(&repo, &["rev-parse", "main"]);
    assert_eq!(git(&repo, &["rev-parse", "main^"]), c_tip);
    assert_eq!(
        git(&repo, &["rev-list", "--parents", "-n", "1", "main"])
            .split(' ')
            .count(),
        2,
        "a squash has one parent"
    );
    assert_eq!(
        git(&repo, &["rev-list", "--count", &format!("{initial}..main")]),
        "2"
    );
    let msg = git(&repo, &["log", "-1", "--format=%B", &head]);
    assert!(
        msg.contains("experiment 1") && msg.contains("lower a to 80"),
        "{msg}"
    );
    assert!(
        msg.contains("experiment 3") && msg.contains("lower a to 60"),
        "{msg}"
    );
    assert!(
        !msg.contains("raise a to 90"),
        "discarded experiments are not listed: {msg}"
    );
    assert!(
        msg.contains("200.0 → 160.0") && msg.contains("+20.00%"),
        "{msg}"
    );
    assert!(
        msg.contains("190.0 → 150.0"),
        "the measurement on top is in the message: {msg}"
    );
    assert_eq!(read(&repo.join("a/v.txt")), "60\n");
    assert_eq!(read(&repo.join("c/v.txt")), "90\n");
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");

    // b is what is left: its gain vanished on top of a. Merging into another branch (--into)
    // creates it from the base and leaves main alone.
    let m = w.json(&["merge", "--into", "integration", "--json"]);
    assert_eq!(m["target"], "integration");
    assert_eq!(m["rows"].as_array().unwrap().len(), 1, "{m:#}");
    assert_eq!(m["rows"][0]["run"], "b");
    assert_eq!(m["rows"][0]["status"], "skipped");
    assert_eq!(git(&repo, &["rev-parse", "integration"]), head);
    assert_eq!(git(&repo, &["rev-parse", "main"]), head);
}

#[test]
fn merge_runs_the_guards_on_the_merged_tree() {
    // a (200 → 160) lands first; c (200 → 190) still improves on top of it (160 → 150), but
    // c's guard, which passed in every experiment of its run, fails once a's change is in.
    let w = World::new();
    let repo = project(&w);
    let _d = w.daemon();
    let a = lower_spec(&w, "a", 60);
    let c = lower_spec(&w, "c", 90);
    let mut text = read(&c);
    text.push_str("[[guard]]\nname = \"a stays\"\ncommand = \"grep -qx 100 a/v.txt\"\n");
    write(&c, &text);
    for s in [&a, &c] {
        w.ok(&["start", s.to_str().unwrap()]);
    }
    for id in ["a", "c"] {
        let st = w.wait_finished(id, T);
        assert_eq!(st["summary"]["state"], "finished", "{st:#}\n{}", w.log(id));
        assert_eq!(st["summary"]["counts"]["kept"], 1, "{st:#}\n{}", w.log(id));
    }

    let plan = w.json(&["merge", "--dry-run", "--json"]);
    assert!(
        plan["rows"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("guards pass"),
        "{plan:#}"
    );
    let m = w.json(&["merge", "--json"]);
    let rows = m["rows"].as_array().unwrap();
    assert_eq!(
        (rows[0]["run"].as_str(), rows[1]["run"].as_str()),
        (Some("a"), Some("c"))
    );
    assert_eq!(rows[0]["status"], "merged", "{m:#}");
    assert_eq!(rows[1]["status"], "skipped", "{m:#}");
    assert_eq!(rows[1]["remeasured"], true, "{m:#}");
    let reason = rows[1]["reason"].as_str().unwrap();
    assert!(
        reason.contains("guard \"a stays\" fails on top of main + a")
            && reason.contains("autoresearch/c"),
        "{reason}"
    );
    assert_eq!(read(&repo.join("a/v.txt")), "60\n");
    assert_eq!(read(&repo.join("c/v.txt")), "100\n", "c did not land");
    assert!(
        w.log("c").contains("merge: skipped: guard"),
        "{}",
        w.log("c")
    );
    // The guard's output from the merge is kept beside the run's other outputs.
    assert!(w
        .state_dir
        .join("runs/c/output/merge-guard-a_stays.out")
        .exists());
}

const AGENT_A: &str = r#"#!/bin/sh
cd "$ARCTL_WORKTREE" || exit 9
d="$ARCTL_DESCRIPTION_FILE"
[ "$ARCTL_FIX_ATTEMPT" != "0" ] && exit 0
case "$ARCTL_EXPERIMENT" in
  1) echo 80 > a/v.txt; echo "lower a to 80" > "$d"
     echo '{"hypothesis": "a smaller a lowers the min", "ideas_not_tried": ["memoize the parser", "lower a to 60"]}' > "$ARCTL_PROPOSAL_FILE";;
  2) echo 90 > a/v.txt; echo "raise a to 90" > "$d";;
  3) echo 60 > a/v.txt; echo "lower a to 60" > "$d";;
  4) echo 50 > a/v.txt; echo touched >> README.md; echo "edit the readme too" > "$d";;
  5) echo crash > a/v.txt; echo "break the value" > "$d";;
esac
exit 0
"#;

#[test]
fn cleanup_locked_and_deleted_worktrees_branches_refs_then_report_and_plot() {
    let w = World::new();
    let repo = project(&w);
    let _d = w.daemon();
    let a = agent_spec(&w, "a", "a", AGENT_A, "[budget]\nmax_experiments = 5");
    let b = patches_spec(
        &w,
        "b",
        "b",
        &[(
            "01.patch",
            format!("lower b to 80\n{}", patch("b/v.txt", "100", "80")),
        )],
    );
    let n = patches_spec(
        &w,
        "n",
        "c",
        &[(
            "01.patch",
            format!("raise c to 150\n{}", patch("c/v.txt", "100", "150")),
        )],
    );
    let s = agent_spec(&w, "s", "d", "#!/bin/sh\nsleep 60\n", "");
    for spec in [&a, &b, &n, &s] {
        w.ok(&["start", spec.to_str().unwrap()]);
    }
    for id in ["a", "b", "n"] {
        let st = w.wait_finished(id, T);
        assert_eq!(st["summary"]["state"], "finished", "{st:#}\n{}", w.log(id));
    }
    w.wait_run("s", T, |s| {
        s["state"] == "running" && s["step"] == "proposing"
    });
    let wt = |id: &str| w.path().join(format!("proj-{id}"));
    let statuses: Vec<String> = tsv_rows(&wt("a").join("autoresearch-a.tsv"))
        .iter()
        .map(|r| r[3].clone())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "baseline",
            "keep",
            "discard",
            "keep",
            "inspector-reject",
            "crash"
        ]
    );

    // An active run: cleanup and merge refuse it and say how to stop it.
    let o = w.arctl(&["cleanup", "s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("arctl stop s"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(wt("s").exists());
    assert_eq!(w.arctl(&["merge", "s"]).status.code(), Some(2));
    assert_eq!(
        w.arctl(&["cleanup"]).status.code(),
        Some(2),
        "cleanup needs runs or --finished"
    );

    // Before cleanup: n never improved, so its report says to delete the branch.
    let rn = w.json(&["report", "n", "--json"]);
    assert!(
        rn["next_steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("Delete the branch")),
        "{rn:#}"
    );

    // a: merged (fast-forward), then its worktree locked by hand.
    let m = w.json(&["merge", "a", "--json"]);
    assert_eq!(m["rows"][0]["status"], "merged", "{m:#}");
    git(&repo, &["worktree", "lock", wt("a").to_str().unwrap()]);
    assert!(git(&repo, &["for-each-ref", "refs/autoresearch/a/"]).contains("discarded/2"));
    let exclude = || read(&repo.join(".git/info/exclude"));
    assert!(exclude().contains("autoresearch-a.tsv") && exclude().contains("autoresearch-a.log"));
    let c = w.json(&["cleanup", "a", "--json"]);
    let r = &c["runs"][0];
    assert_eq!(r["worktree_removed"], true, "{c:#}");
    assert_eq!(r["branch_deleted"], true, "{c:#}");
    assert_eq!(r["refs_deleted"], 2, "{c:#}"); // discarded 2 and crashed 5 (4 was never committed)
    assert!(r["notes"].to_string().contains("locked"), "{c:#}");
    assert!(!wt("a").exists());
    assert!(!git(&repo, &["worktree", "list"]).contains("proj-a"));
    assert_eq!(git(&repo, &["for-each-ref", "refs/autoresearch/a/"]), "");
    assert_eq!(git(&repo, &["branch", "--list", "autoresearch/a"]), "");
    assert!(!exclude().contains("autoresearch-a."), "{}", exclude());
    assert!(
        exclude().contains("autoresearch-s.tsv"),
        "other runs' lines stay"
    );
    assert_eq!(record(&w, "a")["cleaned_up"], true);

    // b: improved, not merged, worktree folder deleted by hand.
    std::fs::remove_dir_all(wt("b")).unwrap();
    let out = w.ok(&["cleanup", "b"]);
    assert!(
        out.contains("autoresearch/b kept") && out.contains("--force"),
        "{out}"
    );
    assert!(
        !git(&repo, &["worktree", "list", "--porcelain"]).contains("proj-b"),
        "the stale entry was pruned"
    );
    assert_eq!(
        git(&repo, &["branch", "--list", "autoresearch/b"]),
        "autoresearch/b"
    );
    let c = w.json(&["cleanup", "b", "--force", "--json"]);
    assert_eq!(c["runs"][0]["branch_deleted"], true, "{c:#}");
    assert_eq!(git(&repo, &["branch", "--list", "autoresearch/b"]), "");

    // n: never improved: its branch goes without --force. s, once stopped: --finished.
    let c = w.json(&["cleanup", "n", "--json"]);
    assert_eq!(c["runs"][0]["branch_deleted"], true, "{c:#}");
    w.ok(&["stop", "s", "--now"]);
    w.wait_run("s", T, |s| s["state"] == "stopped");
    let c = w.json(&["cleanup", "--finished", "--json"]);
    let cleaned: Vec<&str> = c["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    assert_eq!(cleaned, vec!["s"], "{c:#}");
    assert_eq!(
        git(&repo, &["worktree", "list"]).lines().count(),
        1,
        "{}",
        git(&repo, &["worktree", "list"])
    );
    assert_eq!(git(&repo, &["branch", "--list", "autoresearch/*"]), "");
    assert!(!exclude().contains("autoresearch-"), "{}", exclude());
    assert_eq!(git(&repo, &["for-each-ref", "refs/autoresearch/"]), "");

    // After cleanup: results, report and plot still work from the state dir.
    assert_eq!(
        w.json(&["results", "a", "--json"])["rows"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let r = w.json(&["report", "a", "--json"]);
    assert_eq!(
        r["totals"],
        serde_json::json!({"experiments": 5, "kept": 2, "discarded": 1, "crashed": 1, "rejected": 1})
    );
    assert_eq!(
        (r["baseline"].as_f64(), r["final"].as_f64()),
        (Some(200.0), Some(160.0))
    );
    assert!((r["change"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    let top: Vec<u64> = r["top_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["experiment"].as_u64().unwrap())
        .collect();
    assert_eq!(top, vec![3, 1], "180 → 160 (11.1%) beats 200 → 180 (10%)");
    assert_eq!(r["kept"][0]["evidence"], "deterministic");
    assert_eq!(
        r["git_log"]["lines"].as_array().unwrap().len(),
        2,
        "{:#}",
        r["git_log"]
    );
    assert!(r["git_log"]["lines"][0]
        .as_str()
        .unwrap()
        .contains("lower a to 60"));
    assert_eq!(
        r["review"]["ideas_not_tried"],
        serde_json::json!(["memoize the parser"])
    );
    assert_eq!(r["review"]["revisit"][0]["experiment"], 4);
    assert!(r["review"]["revisit"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("out of scope: README.md"));
    assert_eq!(r["merged"], true);
    assert_eq!(r["cleaned_up"], true);
    let human = w.ok(&["report", "a"]);
    for want in [
        "## Next steps",
        "- [ ] ",
        "memoize the parser",
        "lower a to 60",
        "200.0 → 160.0 (+20.00%)",
        "kept, 1 discarded, 1 crashed, 1 inspector-rejected",
    ] {
        assert!(human.contains(want), "missing {want:?} in:\n{human}");
    }
    // b's branch is gone but its commit is still in the object database.
    let rb = w.json(&["report", "b", "--json"]);
    assert_eq!(
        rb["git_log"]["lines"].as_array().unwrap().len(),
        1,
        "{rb:#}"
    );
    assert!(
        rb["git_log"]["note"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{rb:#}"
    );

    let svg = w.path().join("progress.svg");
    let out = w.ok(&["plot", "a", "-o", svg.to_str().unwrap()]);
    assert!(out.contains("5 experiments, 2 kept"), "{out}");
    let check = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, xml.dom.minidom as m\n\
             d = m.parse(sys.argv[1])\n\
             pts = [c for c in d.getElementsByTagName('circle') if c.getAttribute('class').split()[0] == 'exp']\n\
             print(' '.join(c.getAttribute('data-experiment') + ':' + c.getAttribute('class').split()[1] for c in pts))\n\
             print(len(d.getElementsByTagName('path')), len([t for t in d.getElementsByTagName('text') if t.firstChild]))",
        )
        .arg(&svg)
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "the SVG is not well-formed XML: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let parsed = String::from_utf8_lossy(&check.stdout);
    let mut lines = parsed.lines();
    assert_eq!(
        lines.next().unwrap(),
        "0:baseline 1:keep 2:discard 3:keep 4:inspector-reject 5:crash"
    );
    let counts: Vec<usize> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        counts[0] >= 1 && counts[1] >= 5,
        "a best line and labels: {counts:?}"
    );
    let text = read(&svg);
    assert!(
        text.contains("experiment</text>")
            && text.contains("lower is better")
            && text.contains("baseline 200.0"),
        "{text}"
    );
    let o = w.arctl(&["plot", "a", "-o", w.path().join("p.gif").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SVG or PNG"));
}

/// The same score with up to +1 of random noise (about 0.5%): noisy mode, paired rounds.
const NOISY_METRIC: &str = r#"#!/bin/sh
a=$(cat a/v.txt); b=$(cat b/v.txt); c=$(cat c/v.txt)
if [ "$a" -lt "$b" ]; then m=$a; else m=$b; fi
r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
printf 'score: %d.%03d\n' $((m + c)) $((r % 1000))
"#;

#[test]
fn merge_remeasures_a_noisy_run_in_paired_rounds() {
    let w = World::new();
    let repo = project_with(&w, NOISY_METRIC);
    let _d = w.daemon();
    let a = lower_spec(&w, "a", 60);
    let c = lower_spec(&w, "c", 90);
    for s in [&a, &c] {
        w.ok(&["start", s.to_str().unwrap()]);
    }
    for id in ["a", "c"] {
        let st = w.wait_finished(id, T);
        assert_eq!(st["summary"]["mode"], "noisy", "{st:#}");
        assert_eq!(st["summary"]["counts"]["kept"], 1, "{st:#}\n{}", w.log(id));
    }
    let m = w.json(&["merge", "--json"]);
    let rows = m["rows"].as_array().unwrap();
    assert_eq!(
        (rows[0]["run"].as_str(), rows[0]["status"].as_str()),
        (Some("a"), Some("merged")),
        "{m:#}"
    );
    assert_eq!(rows[0]["method"], "fast-forward");
    let c = &rows[1];
    assert_eq!(
        (c["run"].as_str(), c["status"].as_str()),
        (Some("c"), Some("merged")),
        "{m:#}"
    );
    // Paired rounds of the updated base (≈160) against the merged tree (≈150).
    assert!(c["on_top"]["rounds"].as_u64().unwrap() >= 2, "{m:#}");
    assert!(c["on_top"]["p_value"].as_f64().unwrap() < 0.05, "{m:#}");
    let g = c["gain_on_top"].as_f64().unwrap();
    assert!((0.05..0.075).contains(&g), "about 10/160: {g}");
    assert!(w.log("c").contains("merge: round 1/"), "{}", w.log("c"));
    assert_eq!(
        std::fs::read_to_string(repo.join("a/v.txt")).unwrap(),
        "60\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("c/v.txt")).unwrap(),
        "90\n"
    );
    // The report of a noisy kept change says how sure it is.
    let r = w.json(&["report", "c", "--json"]);
    assert_eq!(r["kept"][0]["evidence"], "noisy");
    assert!(r["kept"][0]["confidence"].as_f64().unwrap() > 0.95, "{r:#}");
    assert!(r["kept"][0]["interval"].is_array(), "{r:#}");
}
