//! The command line as a shell user meets it: completion scripts that list the run ids of a
//! live daemon (bash's `complete` round trip, and the zsh and fish entry points) and preset
//! names, completion that never starts a daemon, man pages, and the words of status,
//! watch, results and report for a run that kept nothing, and plots of a 5000x drop.

mod common;

use common::*;

/// Start two runs, `prime` and `probe`, that wait in their proposer.
fn two_runs(w: &World) {
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
    );
    write_exec(&w.path().join("agent.sh"), "#!/bin/sh\nsleep 30\n");
    for (id, dir) in [("prime", "src/a/**"), ("probe", "src/b/**")] {
        let spec = repo.join(format!("{id}.toml"));
        write(
            &spec,
            &format!(
                "[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"{dir}\"]\n[proposer]\ncommand = \"{}\"\n",
                w.path().join("agent.sh").display()
            ),
        );
        w.ok(&["start", spec.to_str().unwrap()]);
    }
}

/// Ask the binary for completions the way a shell's registration does.
fn complete(w: &World, shell: &str, words: &[&str]) -> String {
    let o = w
        .cmd()
        .env("COMPLETE", shell)
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_IFS", "\n")
        .arg("--")
        .args(words)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn completion_lists_live_run_ids_and_presets() {
    let w = World::new();
    let _d = w.daemon();
    two_runs(&w);
    // bash: source the script, call its function as `complete -F` would.
    let script = w.path().join("arctl.bash");
    std::fs::write(&script, w.ok(&["completions", "bash"])).unwrap();
    let bash = std::process::Command::new("bash")
        .env("ARCTL_SOCKET", &w.socket)
        .env("ARCTL_STATE_DIR", &w.state_dir)
        .env("HOME", &w.home)
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(arctl results pr); COMP_CWORD=2; COMP_TYPE=9; _clap_complete_arctl arctl pr results; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&bash.stdout);
    assert!(
        got.contains("prime") && got.contains("probe"),
        "bash: {got:?} {}",
        String::from_utf8_lossy(&bash.stderr)
    );
    let got = complete(&w, "bash", &["arctl", "results", "pri"]);
    assert!(got.contains("prime") && !got.contains("probe"), "{got:?}");
    for shell in ["zsh", "fish"] {
        let got = complete(&w, shell, &["arctl", "stop", "p"]);
        assert!(
            got.contains("prime") && got.contains("probe"),
            "{shell}: {got:?}"
        );
        let got = complete(&w, shell, &["arctl", "merge", "pro"]);
        assert!(
            got.contains("probe") && !got.contains("prime"),
            "{shell}: {got:?}"
        );
    }
    let got = complete(&w, "bash", &["arctl", "init", "--preset", "py"]);
    assert!(
        got.contains("python-runtime")
            && got.contains("pytest-passrate")
            && !got.contains("coverage"),
        "{got:?}"
    );
    w.ok(&["stop", "prime", "--now"]);
    w.ok(&["stop", "probe", "--now"]);
}

#[test]
fn completion_never_starts_a_daemon() {
    let w = World::new();
    // No daemon answers: no run ids (only the flags), and none was started (an autostart
    // would have waited for the new daemon's socket before answering).
    let got = complete(&w, "bash", &["arctl", "results", ""]);
    assert!(got.lines().all(|l| l.starts_with('-')), "{got:?}");
    assert!(!w.socket.exists(), "a daemon was started");
}

#[test]
fn man_pages_cover_every_command() {
    let w = World::new();
    let dir = w.path().join("man");
    w.ok(&["man", "--dir", dir.to_str().unwrap()]);
    for name in [
        "arctl",
        "arctl-start",
        "arctl-merge",
        "arctl-cleanup",
        "arctl-watch",
    ] {
        let page = std::fs::read_to_string(dir.join(format!("{name}.1"))).unwrap();
        assert!(page.contains(".TH"), "{name}");
    }
    let merge = std::fs::read_to_string(dir.join("arctl-merge.1")).unwrap();
    assert!(
        merge.contains("dry\\-run") && merge.contains("re\\-measured"),
        "{merge}"
    );
    let top = w.ok(&["man"]);
    assert!(top.contains(".SH NAME"));
}

#[test]
fn the_daemon_log_has_no_colour_codes() {
    let w = World::new();
    // A client starts the daemon, whose stderr goes to <state>/daemon.log.
    let o = w
        .cmd()
        .env("RUST_LOG", "info")
        .arg("status")
        .output()
        .unwrap();
    assert!(o.status.success());
    let log = w.state_dir.join("daemon.log");
    wait_until(
        "the daemon's first log line",
        std::time::Duration::from_secs(10),
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("daemon listening")),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn commits_without_a_git_identity_carry_the_repos_last_committer_and_start_says_so() {
    let w = World::new();
    // The real binary with the world's HOME (no .gitconfig); an in-process daemon would
    // read this machine's.
    let _d = DaemonProcess::spawn(&w);
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
    );
    write_exec(
        &w.path().join("agent.sh"),
        "#!/bin/sh\necho 90 > src/value.txt\necho lower > \"$ARCTL_DESCRIPTION_FILE\"\n",
    );
    let spec = repo.join("who.toml");
    write(
        &spec,
        &format!(
            "[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = 1\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("agent.sh").display()
        ),
    );
    // The world's HOME has no .gitconfig and the repo sets no identity.
    let o = w.arctl(&["start", spec.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no git identity") && err.contains("t <t@example.com>"),
        "{err}"
    );
    w.wait_finished("who", std::time::Duration::from_secs(30));
    let author = git(
        &repo,
        &["log", "-1", "--format=%an <%ae>", "autoresearch/who"],
    );
    assert_eq!(author, "t <t@example.com>");
}

#[test]
fn the_systemd_unit_verifies_where_systemd_analyze_exists() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/arctl.service");
    let Ok(o) = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
    else {
        eprintln!("skipped: no systemd-analyze on this machine");
        return;
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
}

/// A run of one experiment that keeps nothing: every command says so in plain words.
#[test]
fn status_words_for_a_finished_run_of_one_experiment_that_kept_nothing() {
    let w = World::new();
    let _d = w.daemon();
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
    );
    // The agent makes it worse: discarded.
    write_exec(
        &w.path().join("worse.sh"),
        "#!/bin/sh\necho 101 > src/value.txt\n",
    );
    let spec = repo.join("lone.toml");
    write(
        &spec,
        &format!(
            "[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = 1\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("worse.sh").display()
        ),
    );
    w.ok(&["start", spec.to_str().unwrap()]);
    let s = w.wait_finished("lone", std::time::Duration::from_secs(60));
    assert_eq!(s["summary"]["state"], "finished", "{s:#}");
    assert_eq!(s["summary"]["counts"]["kept"], 0, "{s:#}");

    let detail = w.ok(&["--no-autostart", "status", "lone"]);
    let line = |key: &str| {
        detail
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line: {detail}"))
            .to_string()
    };
    assert!(
        regex::Regex::new(r"^state +finished after \d+\.\ds$")
            .unwrap()
            .is_match(&line("state")),
        "{detail}"
    );
    assert_eq!(
        line("ended"),
        format!("{:<14}budget reached: 1 experiment", "ended")
    );
    assert_eq!(
        line("best "),
        format!("{:<14}none kept: the baseline 100.0 stands", "best")
    );
    let table = w.ok(&["--no-autostart", "status"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    // RUN STATE STEP EXP K/D/C/R BASELINE BEST CHANGE
    assert_eq!(
        row[..8],
        ["lone", "finished", "-", "1/1", "0/1/0/0", "100.0", "none", "-"],
        "{table}"
    );
    let watch = w.ok(&["--no-autostart", "watch", "lone"]);
    assert!(
        watch.contains(": 1 experiment (kept 0, discarded 1")
            && watch.contains("nothing kept (baseline 100.0)"),
        "{watch}"
    );
    let report = w.ok(&["--no-autostart", "report", "lone"]);
    assert!(report.contains("Total 1 experiment: 0 kept"), "{report}");
    assert!(report.contains("\n1 experiment: 0 kept"), "{report}");
    // No "1 experiments", no "(s)", no dash where words belong, anywhere.
    let plot = w.path().join("lone.svg");
    let wrote = w.ok(&[
        "--no-autostart",
        "plot",
        "lone",
        "-o",
        plot.to_str().unwrap(),
    ]);
    let results = w.ok(&["--no-autostart", "results", "lone"]);
    let bad = regex::Regex::new(r"\b1 experiments|\(s\)|\(- for|best - \(-\)").unwrap();
    for (what, text) in [
        ("status", &detail),
        ("watch", &watch),
        ("report", &report),
        ("results", &results),
        ("plot", &wrote),
    ] {
        assert!(!bad.is_match(text), "{what}: {text}");
    }
    assert!(wrote.contains("(1 experiment, 0 kept;"), "{wrote}");
}

/// A 5000x drop (100 → 1 → 0.02): the plot goes log on its own, each point carries its
/// experiment in a `<title>`, `--linear` overrides, and `-o x.png` writes a real PNG.
#[test]
fn plot_of_a_wide_range_in_log_scale_as_svg_and_png() {
    let w = World::new();
    let _d = w.daemon();
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
    );
    write_exec(
        &w.path().join("drop.sh"),
        "#!/bin/sh\ncase $(cat src/value.txt) in 100) v=1;; *) v=0.02;; esac\necho $v > src/value.txt\n",
    );
    let spec = repo.join("wide.toml");
    write(
        &spec,
        &format!(
            "[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = 2\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("drop.sh").display()
        ),
    );
    w.ok(&["start", spec.to_str().unwrap()]);
    let s = w.wait_finished("wide", std::time::Duration::from_secs(60));
    assert_eq!(s["summary"]["counts"]["kept"], 2, "{s:#}");
    // The best of a deterministic run: one pair of parentheses, no stray "(;".
    let detail = w.ok(&["--no-autostart", "status", "wide"]);
    let best = detail.lines().find(|l| l.starts_with("best ")).unwrap();
    assert!(
        best.contains("0.02, +99.98% (final confirmation against the baseline)"),
        "{detail}"
    );

    let svg = w.path().join("wide.svg");
    let out = w.ok(&[
        "--no-autostart",
        "plot",
        "wide",
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(out.contains("(2 experiments, 2 kept; log scale)"), "{out}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains(r#"data-scale="log""#), "{text}");
    let ticks: Vec<&str> = text
        .split(r#"<text class="tick y""#)
        .skip(1)
        .map(|x| &x[x.find('>').unwrap() + 1..x.find("</text>").unwrap()])
        .collect();
    assert_eq!(ticks, ["0.1", "1", "10", "100"], "{text}");
    for (n, v) in [(0, "100.0"), (1, "1.0"), (2, "0.02")] {
        let title = format!("<title>experiment {n}: ");
        let at = text
            .find(&title)
            .unwrap_or_else(|| panic!("no {title}: {text}"));
        assert!(text[at..].starts_with(&format!(
            "{title}{}",
            if n == 0 { "baseline" } else { "keep" }
        )));
        assert!(text[at..at + 80].contains(v), "{}", &text[at..at + 80]);
    }
    // --linear: the same run on a linear axis; no "-0.0" tick either way.
    let lin = w.path().join("lin.svg");
    w.ok(&[
        "--no-autostart",
        "plot",
        "wide",
        "-o",
        lin.to_str().unwrap(),
        "--linear",
    ]);
    let lin = std::fs::read_to_string(&lin).unwrap();
    assert!(lin.contains(r#"data-scale="linear""#));
    assert!(!lin.contains(">-0.0<") && !lin.contains(">-0<"), "{lin}");
    // PNG by the extension: a PNG header and twice the SVG's 820x500.
    let png = w.path().join("wide.png");
    let out = w.ok(&[
        "--no-autostart",
        "plot",
        "wide",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(out.contains("wide.png"), "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!((be(&bytes[16..20]), be(&bytes[20..24])), (1640, 1000));
    // Bad input: another extension, or both axes at once.
    for args in [
        vec!["plot", "wide", "-o", "x.gif"],
        vec!["plot", "wide", "--log", "--linear"],
    ] {
        let o = w.arctl(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
