//! What a real project and a real agent need around the loop: stop rules (a plateau, a cost
//! cap from the agent's reported usage), every experiment's output kept and shown
//! (`arctl show`, `arctl diff`), the user's notes reaching the agent, reruns under a new id,
//! forgetting a finished run, and the user's notification commands.

mod common;

use std::time::Duration;

use common::*;

/// A repo whose metric reads `src/value.txt`, and a spec running `agent` for `budget`.
fn project(w: &World, id: &str, agent: &str, budget: &str) -> std::path::PathBuf {
    let repo = w.path().join("proj");
    if !repo.exists() {
        common::repo(
            &repo,
            &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
        );
    }
    let agent_path = w.path().join(format!("{id}-agent.sh"));
    write_exec(&agent_path, agent);
    let spec = repo.join(format!("{id}.toml"));
    write(
        &spec,
        &format!(
            "id = \"{id}\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\n{budget}\n[proposer]\ncommand = \"{}\"\n",
            agent_path.display()
        ),
    );
    spec
}

#[test]
fn patience_stops_a_plateau_after_keep_crash_discard() {
    let w = World::new();
    let _d = w.daemon();
    // 1: keep (90); 2: crash; 3: discard (no better) -> two in a row without a keep.
    let agent = r#"#!/bin/sh
case "$ARCTL_EXPERIMENT" in
  1) echo 90 > src/value.txt;;
  2) echo crash > src/value.txt;;
  *) echo 95 > src/value.txt;;
esac
echo "try $ARCTL_EXPERIMENT" > "$ARCTL_DESCRIPTION_FILE"
"#;
    let spec = project(&w, "plateau", agent, "patience = 2\nmax_experiments = 10");
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished("plateau", Duration::from_secs(60));
    let s = &st["summary"];
    assert_eq!(s["state"], "finished");
    assert_eq!(s["experiments"], 3, "{s}");
    assert!(
        s["stop_reason"]
            .as_str()
            .unwrap()
            .contains("2 experiments in a row without a keep"),
        "{s}"
    );
    let report = w.ok(&["report", "plateau"]);
    assert!(report.contains("without a keep"), "{report}");
}

#[test]
fn max_cost_stops_a_run_from_the_agents_reported_usage() {
    let w = World::new();
    let _d = w.daemon();
    let agent = r#"#!/bin/sh
v=$(cat src/value.txt); echo $((v-1)) > src/value.txt
echo "lower by one" > "$ARCTL_DESCRIPTION_FILE"
echo '{"hypothesis": "smaller is better", "cost_usd": 0.4}' > "$ARCTL_PROPOSAL_FILE"
"#;
    let spec = project(&w, "costly", agent, "max_cost = 1.0");
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished("costly", Duration::from_secs(60));
    let s = &st["summary"];
    assert_eq!(s["experiments"], 3, "{s}");
    assert!((s["cost_usd"].as_f64().unwrap() - 1.2).abs() < 1e-9, "{s}");
    assert!(
        s["stop_reason"]
            .as_str()
            .unwrap()
            .contains("max_cost $1.00"),
        "{s}"
    );
    let detail = w.ok(&["status", "costly"]);
    assert!(detail.contains("$1.20"), "{detail}");
}

#[test]
fn show_finds_each_experiments_own_output_and_diff() {
    let w = World::new();
    let _d = w.daemon();
    // 1 crashes with a marker on stderr; 2 is kept.
    let agent = r#"#!/bin/sh
case "$ARCTL_EXPERIMENT" in
  1) echo crash > src/value.txt; echo "MARKER-1 the agent speaks" >&2;;
  *) echo 80 > src/value.txt;;
esac
echo "try $ARCTL_EXPERIMENT" > "$ARCTL_DESCRIPTION_FILE"
"#;
    let spec = project(&w, "shown", agent, "max_experiments = 2");
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_finished("shown", Duration::from_secs(60));
    let one = w.ok(&["show", "shown", "1"]);
    assert!(one.contains("crash") && one.contains("Traceback"), "{one}");
    assert!(one.contains("MARKER-1"), "{one}");
    assert!(one.contains("-100") && one.contains("+crash"), "{one}");
    let two = w.ok(&["show", "shown", "2"]);
    assert!(
        !two.contains("MARKER-1") && !two.contains("Traceback"),
        "{two}"
    );
    assert!(two.contains("keep"), "{two}");
    let diff = w.ok(&["diff", "shown", "2"]);
    assert!(diff.contains("+80"), "{diff}");
    let v = w.json(&["show", "shown", "1", "--json"]);
    assert_eq!(v["status"], "crash");
    assert!(v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["name"] == "proposer.err"));
    // The report quotes the crash's own error line, from experiment 1's outputs only.
    let report = w.ok(&["report", "shown"]);
    let from = report.find("## Failures").expect(&report);
    let to = report.find("## Review").expect(&report);
    let failures = &report[from..to];
    assert!(
        failures.contains("experiment 1 (crash)")
            && failures.contains("Traceback (most recent call last): boom")
            && !failures.contains("experiment 2"),
        "{report}"
    );
    // No such experiment: bad input naming the range.
    let o = w.arctl(&["show", "shown", "9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 (the baseline) to 2"));
}

#[test]
fn a_note_reaches_the_next_prompts_and_can_be_cleared() {
    let w = World::new();
    let _d = w.daemon();
    let seen = w.path().join("prompts");
    std::fs::create_dir_all(&seen).unwrap();
    // The agent keeps every prompt it gets; it waits for a go-file before experiment 2.
    let agent = format!(
        r#"#!/bin/sh
cat > {seen}/$ARCTL_EXPERIMENT.txt
while [ "$ARCTL_EXPERIMENT" -ge 2 ] && [ ! -f {seen}/go ]; do sleep 0.05; done
v=$(cat src/value.txt); echo $((v-1)) > src/value.txt
echo "lower" > "$ARCTL_DESCRIPTION_FILE"
"#,
        seen = seen.display()
    );
    // The agent writes outside its worktree only where the spec opens a hole.
    let spec = project(
        &w,
        "steered",
        &agent,
        &format!(
            "max_experiments = 3\n[sandbox]\nwritable = [\"{}\"]",
            seen.display()
        ),
    );
    w.ok(&["start", spec.to_str().unwrap()]);
    wait_until("experiment 2's prompt", Duration::from_secs(30), || {
        seen.join("2.txt").exists()
    });
    w.ok(&["note", "steered", "focus on the parser, not I/O"]);
    let detail = w.ok(&["status", "steered"]);
    assert!(detail.contains("focus on the parser"), "{detail}");
    write(&seen.join("go"), "");
    w.wait_finished("steered", Duration::from_secs(30));
    let p3 = std::fs::read_to_string(seen.join("3.txt")).unwrap();
    assert!(
        p3.contains("Notes from the user") && p3.contains("focus on the parser"),
        "{p3}"
    );
    let p1 = std::fs::read_to_string(seen.join("1.txt")).unwrap();
    assert!(!p1.contains("focus on the parser"));
    // A finished run takes no more notes; clearing still works.
    let o = w.arctl(&["note", "steered", "more"]);
    assert_eq!(o.status.code(), Some(2));
    w.ok(&["note", "steered", "--clear"]);
    assert!(!w.ok(&["status", "steered"]).contains("focus on the parser"));
}

#[test]
fn rerun_under_a_new_id_forget_and_active_only() {
    let w = World::new();
    let _d = w.daemon();
    let agent = "#!/bin/sh\necho 90 > src/value.txt\necho lower > \"$ARCTL_DESCRIPTION_FILE\"\n";
    let spec = project(&w, "first", agent, "max_experiments = 1");
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_finished("first", Duration::from_secs(30));
    // The same spec again is refused (the id is taken), but runs under --id.
    let o = w.arctl(&["start", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    w.ok(&["start", spec.to_str().unwrap(), "--id", "second"]);
    assert!(w.path().join("proj-second").exists());
    w.wait_finished("second", Duration::from_secs(30));
    let o = w.arctl(&["start", spec.to_str().unwrap(), "--id", "Bad Id"]);
    assert_eq!(o.status.code(), Some(2));
    // --active lists only what still runs.
    let v = w.json(&["status", "--active", "--json"]);
    assert_eq!(v["runs"], serde_json::json!([]));
    // Forget: refused while the worktree exists; after cleanup, gone from the list, kept
    // aside on disk; --purge deletes it.
    let o = w.arctl(&["forget", "first"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("arctl cleanup first"));
    w.ok(&["cleanup", "first", "second", "--force"]);
    let out = w.ok(&["forget", "first"]);
    assert!(out.contains("kept in"), "{out}");
    w.ok(&["forget", "second", "--purge"]);
    let v = w.json(&["status", "--json"]);
    assert_eq!(v["runs"], serde_json::json!([]));
    let aside: Vec<_> = std::fs::read_dir(w.state_dir.join("forgotten"))
        .unwrap()
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(!w.state_dir.join("runs/second").exists());
    // The id is free again.
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_finished("first", Duration::from_secs(30));
}

/// A stand-in for an agent CLI: it checks it got the prompt, lowers the value, and prints
/// its usage report the way the real tool does.
fn stand_in(bin: &std::path::Path, name: &str, report: &str) {
    write_exec(
        &bin.join(name),
        &format!(
            r#"#!/bin/sh
if [ "{name}" = opencode ]; then prompt="$*"; else prompt=$(cat); fi
case "$prompt" in *QUESTION*) ;; *) echo "no prompt" >&2; exit 9;; esac
v=$(cat src/value.txt); echo $((v-1)) > src/value.txt
echo "lower by one" > "$ARCTL_DESCRIPTION_FILE"
printf '%s\n' '{report}'
"#
        ),
    );
}

#[test]
fn each_agent_preset_resolves_and_runs_its_stand_in() {
    let w = World::new();
    let bin = w.path().join("bin");
    let presets = [
        (
            "claude",
            r#"{"type":"result","total_cost_usd":0.25,"usage":{"input_tokens":100,"output_tokens":20}}"#,
            "claude -p --output-format json",
            Some(0.25),
        ),
        (
            "codex",
            r#"{"type":"turn.completed","usage":{"input_tokens":90,"output_tokens":10}}"#,
            "codex exec --sandbox workspace-write",
            None,
        ),
        (
            "aider",
            "Tokens: 2.3k sent, 120 received. Cost: $0.03 message, $0.03 session.",
            "aider --yes-always --no-auto-commits",
            Some(0.03),
        ),
        (
            "gemini",
            r#"{"response":"ok","stats":{"totalTokens":55}}"#,
            "gemini --yolo",
            None,
        ),
        ("opencode", "done", "opencode run", None),
    ];
    for (name, report, _, _) in presets {
        stand_in(&bin, name, report);
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let _d = DaemonProcess::spawn_with(&w, |c| {
        c.env("PATH", &path);
    });
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
    );
    for (name, _, expanded, cost) in presets {
        let spec = repo.join(format!("{name}.toml"));
        write(
            &spec,
            &format!(
                "id = \"{name}\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/{name}/**\", \"src/value.txt\"]\n[budget]\nmax_experiments = 1\n[proposer]\npreset = \"{name}\"\n"
            ),
        );
        let shown = w.ok(&["validate", spec.to_str().unwrap()]);
        assert!(shown.contains(expanded), "{name}: {shown}");
        w.ok(&["start", spec.to_str().unwrap()]);
        let st = w.wait_finished(name, Duration::from_secs(60));
        let s = &st["summary"];
        assert_eq!(s["counts"]["kept"], 1, "{name}: {st:#}\n{}", w.log(name));
        match cost {
            Some(c) => assert!(
                (s["cost_usd"].as_f64().unwrap() - c).abs() < 1e-9,
                "{name}: {s}"
            ),
            None => assert!(s.get("cost_usd").is_none(), "{name}: {s}"),
        }
        if name == "codex" || name == "gemini" {
            let v = w.json(&["show", name, "1", "--json"]);
            assert!(
                v["hypothesis"]["tokens"].as_u64().unwrap() > 0,
                "{name}: {v}"
            );
        }
        w.ok(&["cleanup", name, "--force"]);
    }
    // An unknown preset names the known ones.
    let spec = repo.join("bad.toml");
    write(
        &spec,
        "[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\npreset = \"cursor\"\n",
    );
    let o = w.arctl(&["validate", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("expected one of claude, codex, aider, gemini, opencode"));
}

#[test]
fn notify_commands_hear_of_keeps_the_end_and_failures_and_cannot_hurt_the_run() {
    let w = World::new();
    let _d = w.daemon();
    let heard = w.path().join("heard");
    let agent = r#"#!/bin/sh
v=$(cat src/value.txt); echo $((v-1)) > src/value.txt
echo "lower by one" > "$ARCTL_DESCRIPTION_FILE"
"#;
    // on_keep fails (exit 7): logged, the run goes on; on_finish records what it got.
    let notify = format!(
        "[notify]\non_keep = \"echo keep $ARCTL_EXPERIMENT >> {h}; exit 7\"\non_finish = \"echo $ARCTL_RUN_ID $ARCTL_EVENT $ARCTL_STATE $ARCTL_BEST $ARCTL_CHANGE >> {h}; grep -q 'Report: run told' $ARCTL_REPORT && echo report-ok >> {h}\"\n",
        h = heard.display()
    );
    let spec = project(&w, "told", agent, &format!("max_experiments = 2\n{notify}"));
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished("told", Duration::from_secs(60));
    assert_eq!(st["summary"]["state"], "finished", "{st:#}");
    assert_eq!(st["summary"]["counts"]["kept"], 2, "{st:#}");
    wait_until("the on_finish command ran", Duration::from_secs(30), || {
        std::fs::read_to_string(&heard).is_ok_and(|t| t.contains("report-ok"))
    });
    let text = std::fs::read_to_string(&heard).unwrap();
    assert!(text.contains("told finish finished 98"), "{text}");
    assert!(text.contains("%"), "{text}");
    assert!(
        text.contains("keep 1\n") && text.contains("keep 2\n"),
        "{text}"
    );
    wait_until(
        "the failed on_keep is logged",
        Duration::from_secs(10),
        || w.log("told").contains("notify on_keep") && w.log("told").contains("exit 7"),
    );

    // on_fail: a run whose baseline fails.
    let failing = format!(
        "max_experiments = 1\n[notify]\non_fail = \"echo $ARCTL_EVENT $ARCTL_STATE >> {}\"\n",
        heard.display()
    );
    let spec = project(&w, "doomed", agent, &failing);
    let metric = w.path().join("proj/doomed-metric.sh");
    write_exec(&metric, "#!/bin/sh\nexit 1\n");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("./metric.sh", metric.to_str().unwrap());
    write(&spec, &text);
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished("doomed", Duration::from_secs(60));
    assert_eq!(st["summary"]["state"], "failed", "{st:#}");
    wait_until("the on_fail command ran", Duration::from_secs(30), || {
        std::fs::read_to_string(&heard).is_ok_and(|t| t.contains("fail failed"))
    });
}
