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
    // The time left, by the experiment budget once one experiment says how long they take.
    assert!(out.contains("left (max_experiments)"), "{out}");
    assert!(out.contains("last keep"), "{out}");
    let last = lines.last().unwrap();
    assert!(
        regex::Regex::new(r"^slow finished after \d+\.\ds: 4 experiments \(kept 4, discarded 0")
            .unwrap()
            .is_match(last),
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
    t.expect_within("3 experiments (kept 3", Duration::from_secs(60));
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

/// Every line of `out` as the screen shows it: control sequences dropped, split at carriage
/// returns and newlines.
fn screen_lines(out: &str) -> Vec<String> {
    let csi = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").unwrap();
    csi.replace_all(out, "")
        .split(['\r', '\n'])
        .map(str::to_string)
        .collect()
}

#[test]
fn watch_fits_80_columns_with_long_ids_and_shows_the_time_left() {
    let w = World::new();
    let _d = w.daemon();
    // A long id and a wall budget: the lines have a lot to say.
    let id = "a-rather-long-run-id-for-narrow-terminals";
    let spec = slow_run(&w, id, 3);
    let text = std::fs::read_to_string(&spec).unwrap();
    write(
        &spec,
        &text.replace("[budget]\n", "[budget]\nmax_wall = \"1h\"\n"),
    );
    w.ok(&["start", spec.to_str().unwrap(), "--id", id]);
    // A pipe with COLUMNS=80: each line cut to 80 columns, the closing summary wrapped.
    let o = w
        .cmd()
        .args(["--no-autostart", "watch", id])
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let width = |l: &str| l.chars().count();
    assert!(out.lines().all(|l| width(l) <= 80), "{out}");
    assert!(out.contains('…'), "nothing was cut: {out}");
    assert!(out.contains("(kept 3"), "{out}");
    // A terminal of 80 columns: the bars never reach the last column (no wrap), and the
    // time left comes before what is cut.
    let spec2 = slow_run(&w, "narrow", 3);
    w.ok(&["start", spec2.to_str().unwrap()]);
    let mut cmd = w.cmd();
    cmd.args(["--no-autostart", "watch", "narrow"])
        .env("TERM", "xterm");
    let mut t = pty::Pty::spawn_sized(cmd, 24, 80);
    t.expect_within("(kept 3", Duration::from_secs(60));
    assert!(t.wait(Duration::from_secs(10)).success(), "{}", t.output());
    let lines = screen_lines(&t.output());
    // indicatif blanks the rest of a line with spaces up to the width: those are not text.
    let wide: Vec<&String> = lines.iter().filter(|l| width(l.trim_end()) >= 80).collect();
    assert!(wide.is_empty(), "lines of 80 columns or more: {wide:#?}");
    assert!(
        lines.iter().any(|l| l.contains(" left")),
        "no time left shown: {lines:#?}"
    );
}
