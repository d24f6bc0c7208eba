//! `arctl watch` end to end: plain lines when stdout is not a terminal, live bars under a
//! pseudo-terminal; both end when the run does.

mod common;
mod pty;

use std::time::Duration;

use common::*;

/// A repo with a scripted agent that lowers `src/value.txt` by one each experiment.
fn slow_run(w: &World, id: &str, max: u32) -> std::path::PathBuf {
    let repo = w.path().join(format!("proj-{id}-src"));
    common::repo(
        &repo,
        &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
    );
    let agent = w.path().join("agent.sh");
    write_exec(
        &agent,
        "#!/bin/sh\nv=$(cat src/value.txt); echo $((v-1)) > src/value.txt; echo \"to $((v-1))\" > \"$ARCTL_DESCRIPTION_FILE\"; sleep 0.3\n",
    );
    let spec = w.path().join(format!("{id}.toml"));
    write(
        &spec,
        &format!(
            "repo = \"{}\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = {max}\n[proposer]\ncommand = \"{}\"\n",
            repo.display(),
            agent.display()
        ),
    );
    spec
}

#[test]
fn watch_prints_lines_when_not_a_terminal_and_exits_when_the_run_ends() {
    let w = World::new();
    let _d = w.daemon();
    let o = w.arctl(&["--no-autostart", "watch", "nope"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run \"nope\""));
    // Nothing active: says so and ends.
    let out = w.ok(&["--no-autostart", "watch"]);
    assert!(out.contains("no active runs"), "{out}");

    let spec = slow_run(&w, "slow", 4);
    w.ok(&["start", spec.to_str().unwrap()]);
    let t0 = std::time::Instant::now();
    let out = w.ok(&["--no-autostart", "watch", "slow"]);
    assert!(t0.elapsed() < Duration::from_secs(60));
    let lines: Vec<&str> = out.lines().collect();
    // One line per change: several, each stamped, none repeated back to back.
    assert!(lines.len() >= 4, "{out}");
    for pair in lines.windows(2) {
        assert_ne!(pair[0][8..], pair[1][8..], "{out}");
    }
    let ts = regex::Regex::new(r"^\d\d:\d\d:\d\d  slow  ").unwrap();
    assert!(
        lines[..lines.len() - 1].iter().all(|l| ts.is_match(l)),
        "{out}"
    );
    assert!(out.contains("exp 4/4"), "{out}");
    assert!(out.contains("last keep"), "{out}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("slow finished: 4 experiments (kept 4, discarded 0"),
        "{out}"
    );
    assert!(
        last.contains("baseline 100.0 -> best 96.0 (+4.00%)"),
        "{out}"
    );
    // The run really is over.
    assert_eq!(
        w.json(&["status", "slow", "--json"])["summary"]["state"],
        "finished"
    );
    // Watching a finished run returns at once with its summary.
    let again = w.ok(&["--no-autostart", "watch", "slow"]);
    assert!(
        again.lines().last().unwrap().starts_with("slow finished"),
        "{again}"
    );
}

#[test]
fn watch_draws_bars_in_a_terminal() {
    let w = World::new();
    let _d = w.daemon();
    let spec = slow_run(&w, "bars", 3);
    w.ok(&["start", spec.to_str().unwrap()]);
    let mut cmd = w.cmd();
    cmd.args(["--no-autostart", "watch"]).env("TERM", "xterm");
    let mut t = pty::Pty::spawn(cmd);
    t.expect_within("bars finished: 3 experiments", Duration::from_secs(60));
    let st = t.wait(Duration::from_secs(10));
    assert!(st.success(), "{st:?}\n{}", t.output());
    let out = t.output();
    // A bar with its count, and in-place redraws (cursor movement), not a line per poll.
    assert!(out.contains("3/3"), "{out}");
    assert!(out.contains("=>") || out.contains("==="), "{out}");
    assert!(
        out.contains("\x1b["),
        "no terminal control sequences: {out}"
    );
}

#[test]
fn ctrl_c_leaves_the_run_going() {
    let w = World::new();
    let _d = w.daemon();
    let spec = slow_run(&w, "long", 30);
    w.ok(&["start", spec.to_str().unwrap()]);
    let mut cmd = w.cmd();
    cmd.args(["--no-autostart", "watch", "long"])
        .env("TERM", "xterm");
    let mut t = pty::Pty::spawn(cmd);
    t.expect_within("long", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    t.send_raw(b"\x03");
    let st = t.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(130), "{}", t.output());
    assert!(t.output().contains("the runs go on"), "{}", t.output());
    let s = w.json(&["status", "long", "--json"]);
    assert!(
        ["running", "starting"].contains(&s["summary"]["state"].as_str().unwrap()),
        "{s:#}"
    );
    w.ok(&["stop", "long", "--now"]);
}
