//! The noise-aware decision end to end, with a real timing metric (`metric.time`): changes
//! that do nothing are (almost) never kept, a change that halves the work is.

mod common;

use std::time::Duration;

use common::*;

/// A CPU-bound loop whose size comes from src/work.txt. Its wall time varies with the load
/// of this shared machine, as real benchmarks do.
const WORK_SH: &str = r#"#!/bin/sh
n=$(cat src/work.txt)
awk -v n="$n" 'BEGIN { s = 0; for (i = 0; i < n; i++) s += i * 2; print s }' > /dev/null
"#;

fn timed_run(
    agent: &str,
    budget: u32,
    extra: &str,
    work: u64,
) -> (
    World,
    Vec<Vec<String>>,
    serde_json::Value,
    arctl::daemon::DaemonHandle,
) {
    let w = World::new();
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[
            ("work.sh", WORK_SH),
            ("src/work.txt", &format!("{work}\n")),
            ("src/notes.txt", "notes\n"),
        ],
    );
    write_exec(&w.path().join("agent.sh"), agent);
    let spec = w.path().join("timed.toml");
    write(
        &spec,
        &format!(
            r#"
repo = "proj"
[metric]
command = "./work.sh"
time = "wall"
direction = "lower"
min_effect = "5%"
{extra}
[scope]
include = ["src/**"]
[budget]
max_experiments = {budget}
[limits]
measure = "exclusive"
[proposer]
command = "{}"
"#,
            w.path().join("agent.sh").display()
        ),
    );
    let d = w.daemon();
    w.ok(&["start", spec.to_str().unwrap()]);
    // Until it ends, watch for the progress of the paired rounds in `status`.
    let saw_rounds = std::cell::Cell::new(false);
    let st = w.wait_run("timed", Duration::from_secs(600), |s| {
        if s["step_detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("round ")
        {
            saw_rounds.set(true);
        }
        ["finished", "stopped", "failed"].contains(&s["state"].as_str().unwrap_or(""))
    });
    if budget >= 20 {
        assert!(saw_rounds.get(), "status showed no round progress");
    }
    let rows = tsv_rows(&w.path().join("proj-timed/autoresearch-timed.tsv"));
    (w, rows, st, d)
}

#[test]
fn noop_changes_on_a_noisy_timing_metric_are_not_kept() {
    // Each experiment appends a line to a notes file: a real change that does nothing.
    let agent = "#!/bin/sh\necho \"note $ARCTL_EXPERIMENT\" >> src/notes.txt\necho \"note $ARCTL_EXPERIMENT\" > \"$ARCTL_DESCRIPTION_FILE\"\n";
    let (w, rows, st, _d) = timed_run(agent, 20, "", 400_000);
    assert_eq!(rows.len(), 21, "{rows:?}\n{}", w.log("timed"));
    let kept = rows.iter().filter(|r| r[3] == "keep").count();
    assert!(kept <= 1, "{kept} no-op changes kept:\n{rows:#?}");
    assert_eq!(st["summary"]["mode"], "noisy", "{st:#}");
    assert!(st["summary"]["cv"].as_f64().unwrap() > 0.0);
    // The journal says how each decision was reached and how the best was measured.
    let journal = std::fs::read_to_string(w.state_dir.join("runs/timed/journal.jsonl")).unwrap();
    let e: serde_json::Value = serde_json::from_str(journal.lines().nth(1).unwrap()).unwrap();
    let d = &e["decision"];
    assert!(d["rounds"].as_u64().unwrap() >= 3, "{d}");
    assert!(
        d["p_value"].is_number() && d["lower"].is_number() && d["upper"].is_number(),
        "{d}"
    );
    assert!(
        e["best_tree"].as_str().unwrap().contains("second worktree"),
        "{e}"
    );
    let roles: Vec<&str> = e["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["tree"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles[..4],
        ["best", "candidate", "candidate", "best"],
        "alternating order"
    );
    // `results` shows change and confidence per row.
    let res = w.json(&["results", "timed", "--json"]);
    assert!(
        res["rows"][1]["confidence"].is_number(),
        "{}",
        res["rows"][1]
    );
}

#[test]
fn a_change_that_halves_the_work_is_kept() {
    let agent = "#!/bin/sh\nn=$(cat src/work.txt)\necho $((n / 2)) > src/work.txt\necho \"halve the work to $((n / 2))\" > \"$ARCTL_DESCRIPTION_FILE\"\n";
    let (w, rows, st, _d) = timed_run(agent, 1, "", 2_000_000);
    assert_eq!(rows[1][3], "keep", "{rows:?}\n{}", w.log("timed"));
    let gain = st["summary"]["change"].as_f64().unwrap();
    assert!(gain > 0.2, "gain {gain}");
}

#[test]
fn fixed_repeats_and_cpu_time() {
    // repeats = N: every decision takes exactly N rounds; time = "cpu" reads the tree's CPU.
    let agent = "#!/bin/sh\necho x >> src/notes.txt\n";
    let (w, rows, _, _d) = timed_run(agent, 2, "repeats = 4", 400_000);
    assert_eq!(rows.len(), 3);
    let journal = std::fs::read_to_string(w.state_dir.join("runs/timed/journal.jsonl")).unwrap();
    for line in journal.lines().skip(1) {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["status"] == "confirmation" {
            // The final confirmation of a keep measures at least 8 rounds.
            assert!(e["decision"]["rounds"].as_u64().unwrap() >= 8, "{e}");
            continue;
        }
        assert_eq!(e["decision"]["rounds"], 4, "{e}");
    }
    let spec_cpu = w.path().join("cpu.toml");
    write(
        &spec_cpu,
        "repo = \"proj\"\n[metric]\ncommand = \"./work.sh\"\ntime = \"cpu\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\ncommand = \"true\"\n",
    );
    let v = w.json(&["validate", spec_cpu.to_str().unwrap(), "--json"]);
    assert_eq!(v["spec"]["metric"]["time"], "cpu");
    // "instructions" is refused at validate time where the kernel has no counter.
    let spec_ins = w.path().join("ins.toml");
    write(
        &spec_ins,
        &std::fs::read_to_string(&spec_cpu)
            .unwrap()
            .replace("\"cpu\"", "\"instructions\""),
    );
    let o = w.arctl(&["validate", spec_ins.to_str().unwrap()]);
    if arctl::exec::instructions_supported().is_err() {
        assert_eq!(o.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("instructions"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        assert!(o.status.success());
    }
}
