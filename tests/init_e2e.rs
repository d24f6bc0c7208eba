//! `arctl init` end to end: the non-interactive form (--set, presets, refusals) and the
//! interactive dialogue driven through a pseudo-terminal.

mod common;
mod pty;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A repo whose metric prints `score: <src/value.txt>`.
fn project(w: &World) -> std::path::PathBuf {
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[
            ("metric.sh", METRIC_SH),
            ("src/value.txt", "100\n"),
            ("src/other.txt", "x\n"),
            ("README.md", "readme\n"),
        ],
    );
    repo
}

fn init_in(w: &World, dir: &Path, args: &[&str]) -> std::process::Output {
    w.cmd()
        .current_dir(dir)
        .arg("init")
        .args(args)
        .output()
        .expect("arctl runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn non_interactive_writes_a_spec_that_validates() {
    let w = World::new();
    let repo = project(&w);
    let o = init_in(
        &w,
        &repo,
        &[
            "--non-interactive",
            "--set",
            "goal=Lower the score",
            "--set",
            "metric.command=./metric.sh",
            "--set",
            "metric.regex=score: ([0-9]+)",
            "--set",
            "metric.direction=lower",
            "--set",
            "scope.include=src/**",
            "--set",
            "scope.exclude=['src/other.txt']",
            "--set",
            "guard.sane=test -f src/value.txt",
            "--set",
            "budget.max_experiments=12",
            "--set",
            "limits.memory=1GiB",
            "--set",
            "proposer.command=claude -p",
        ],
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("| Trial reading     | 100.0"), "{out}");
    assert!(out.contains("arctl start autoresearch.toml"), "{out}");
    assert!(err.contains("src/**: 2 tracked files"), "{err}");
    let spec = repo.join("autoresearch.toml");
    let v = w.json(&["validate", spec.to_str().unwrap(), "--json"]);
    assert_eq!(v["id"], "lower-the-score");
    assert_eq!(v["spec"]["metric"]["regex"], "score: ([0-9]+)");
    assert_eq!(v["spec"]["scope"]["exclude"][0], "src/other.txt");
    assert_eq!(v["spec"]["guard"][0]["name"], "sane");
    assert_eq!(v["spec"]["budget"]["max_experiments"], 12);
    assert_eq!(v["spec"]["limits"]["memory"], "1GiB");

    // Never over an existing file without --force.
    let again = ["--non-interactive", "--set", "metric.command=./metric.sh"];
    let o = init_in(&w, &repo, &again);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("already exists; use --force"),
        "{}",
        text(&o.stderr)
    );
    assert!(std::fs::read_to_string(&spec)
        .unwrap()
        .contains("max_experiments = 12"));
    let o = init_in(
        &w,
        &repo,
        &[
            "--force",
            "--non-interactive",
            "--set",
            "metric.command=./metric.sh",
            "--set",
            "metric.direction=higher",
            "--set",
            "scope.include=src/*.txt",
            "--set",
            "proposer.kind=params",
            "--set",
            "proposer.param={file = \"src/value.txt\", regex = '(\\d+)', values = [90, 80]}",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v = w.json(&["validate", spec.to_str().unwrap(), "--json"]);
    assert_eq!(v["spec"]["proposer"]["kind"], "params");
    assert_eq!(
        v["spec"]["proposer"]["param"][0]["values"],
        serde_json::json!([90, 80])
    );
    assert_eq!(v["spec"]["metric"]["direction"], "higher");
}

#[test]
fn presets_prefill_the_metric() {
    let w = World::new();
    let repo = w.path().join("py");
    common::repo(
        &repo,
        &[
            (
                "fake-pytest.sh",
                "#!/bin/sh\necho '3 failed, 12 passed in 0.52s'\n",
            ),
            ("src/app.py", "x = 1\n"),
        ],
    );
    // The preset's command, with the test runner swapped for the fake; regex and direction stay.
    let o = init_in(
        &w,
        &repo,
        &[
            "--non-interactive",
            "--preset",
            "pytest-passrate",
            "-o",
            "pass.toml",
            "--set",
            "metric.command=./fake-pytest.sh | tail -1",
            "--set",
            "scope.include=src/**",
            "--set",
            "proposer.command=codex exec --full-auto",
        ],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("| Trial reading     | 12.0"), "{out}");
    let v = w.json(&[
        "validate",
        repo.join("pass.toml").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["id"], "pytest-passrate");
    assert_eq!(v["spec"]["metric"]["regex"], "([0-9]+) passed");
    assert_eq!(v["spec"]["metric"]["direction"], "higher");

    // A preset whose tool is missing here: the trial finds no number, nothing is written.
    let o = init_in(
        &w,
        &repo,
        &[
            "--non-interactive",
            "--preset",
            "ty-errors",
            "-o",
            "ty.toml",
            "--set",
            "metric.command=definitely-not-a-tool-xyz check",
            "--set",
            "scope.include=src/**",
            "--set",
            "proposer.command=claude -p",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(!repo.join("ty.toml").exists());

    // list / unknown
    let o = init_in(&w, &repo, &["--preset", "list"]);
    assert_eq!(o.status.code(), Some(0));
    let list = text(&o.stdout);
    for name in [
        "python-runtime",
        "python-memory",
        "pytest-passrate",
        "pytest-duration",
        "coverage",
        "ty-errors",
        "postgres-explain",
        "pgbench-tps",
        "ml-val-loss",
        "sklearn-cv",
        "cargo-bench",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    let o = init_in(&w, &repo, &["--preset", "no-such-preset"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("unknown preset \"no-such-preset\"") && err.contains("cargo-bench"),
        "{err}"
    );
}

#[test]
fn bad_input_is_refused_with_exit_2_and_nothing_written() {
    let w = World::new();
    let repo = project(&w);
    let base = |extra: &[&str]| {
        let mut a = vec![
            "--non-interactive",
            "--set",
            "metric.direction=lower",
            "--set",
            "scope.include=src/**",
            "--set",
            "proposer.command=claude -p",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        init_in(&w, &repo, &refs)
    };

    // A guard that fails on the current tree is caught before anything is written.
    let o = run(base(&[
        "--set",
        "metric.command=./metric.sh",
        "--set",
        "guard.broken=false",
    ]));
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("guard broken") && err.contains("fails on the current tree"),
        "{err}"
    );
    assert!(!repo.join("autoresearch.toml").exists());

    // An unknown key is named, with a suggestion.
    let o = run(base(&["--set", "metric.comand=./metric.sh"]));
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("metric.comand") && err.contains("did you mean `metric.command`"),
        "{err}"
    );

    // A value of the wrong type names the key.
    let o = run(base(&[
        "--set",
        "metric.command=./metric.sh",
        "--set",
        "budget.max_experiments=many",
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("budget.max_experiments"),
        "{}",
        text(&o.stderr)
    );

    // A metric that prints no number.
    let o = run(base(&["--set", "metric.command=echo all good"]));
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("no number") && err.contains("all good"),
        "{err}"
    );

    // A regex that matches nothing in the output.
    let o = run(base(&[
        "--set",
        "metric.command=./metric.sh",
        "--set",
        "metric.regex=mean: ([0-9]+)",
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("matched nothing"),
        "{}",
        text(&o.stderr)
    );

    // A metric that fails.
    let o = run(base(&["--set", "metric.command=echo 5; exit 3"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("exit 3"), "{}", text(&o.stderr));

    // Answers missing.
    let o = init_in(
        &w,
        &repo,
        &["--non-interactive", "--set", "metric.command=./metric.sh"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("metric.direction")
            && err.contains("scope.include")
            && err.contains("proposer.command"),
        "{err}"
    );

    // A spec-level mistake (bad duration) is caught before anything is written.
    let o = run(base(&[
        "--set",
        "metric.command=./metric.sh",
        "--set",
        "budget.max_wall=forever",
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("invalid duration"),
        "{}",
        text(&o.stderr)
    );

    // Not a git repo.
    let plain = w.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let o = w
        .cmd()
        .current_dir(&plain)
        .args(["init", "--non-interactive"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not a git repository"),
        "{}",
        text(&o.stderr)
    );

    // Input that ends mid-dialogue (stdin piped, not a terminal).
    let o = w
        .cmd()
        .current_dir(&repo)
        .arg("init")
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("input ended"),
        "{}",
        text(&o.stderr)
    );

    assert!(!repo.join("autoresearch.toml").exists());
}

#[test]
fn interactive_dialogue_through_a_pty() {
    let w = World::new();
    let repo = project(&w);
    write(
        &repo.join("hyp/01-lower.patch"),
        "--- a/src/value.txt\n+++ b/src/value.txt\n@@ -1 +1 @@\n-100\n+90\n",
    );
    let mut cmd = w.cmd();
    // A real terminal type: the answers go through the line editor.
    cmd.current_dir(&repo).arg("init").env("TERM", "xterm");
    let mut t = pty::Pty::spawn(cmd);

    t.expect("What are you trying to improve?");
    // Typed with a slip, mended with the Left arrow: "Lower th| score" -> "Lower the score".
    t.send_raw(b"Lower th score");
    t.send_raw(&b"\x1b[D".repeat(6));
    t.send_raw(b"e\r");
    // A command without a number is refused and asked again.
    t.expect("What command produces the metric?");
    t.send("echo no number here");
    t.expect("choice [last]: ");
    t.send("4");
    t.expect("no number could be read");
    t.expect(
        "What command produces the metric? (run with sh in the repo root) [echo no number here]: ",
    );
    // A slip mended with Backspace.
    t.send_raw(b"./metric.shx\x7f\r");
    t.expect("choice [last]: ");
    t.send("regex");
    t.expect("Regex (one capture group around the number): ");
    t.send("score: ([0-9]+)");
    t.expect("read 100.0 from its output");
    t.expect("Which direction is better?");
    t.expect("choice [lower]: ");
    t.send("lower");
    // A glob matching no tracked file is warned about.
    t.expect("Which files may be edited (in scope)?: ");
    t.send("nothing/**");
    t.expect("nothing/** matches no tracked file");
    t.expect("Keep it anyway? (y/n) [n]: ");
    t.send("n");
    t.expect("Which files may be edited (in scope)?");
    t.send("src/**");
    t.expect("src/**: 2 tracked files");
    t.expect("(out of scope)? [none]: ");
    t.send("src/other.txt");
    t.expect("takes 1 of those out");
    // A command without a name gets one asked for; one that fails at once is caught here.
    t.expect("Add a guard as NAME: COMMAND (empty when done): ");
    t.send("false");
    t.expect("Name for the guard `false` (e.g. tests): ");
    t.send("broken");
    t.expect("`false` fails on the current tree (exit 1)");
    t.expect("Keep it anyway? (y/n) [n]: ");
    t.send("n");
    t.expect("Add a guard as NAME: COMMAND (empty when done): ");
    t.send("sane: test -f src/value.txt");
    t.expect("guard sane passes on the current tree");
    t.expect("Add a guard as NAME: COMMAND (empty when done): ");
    t.send("");
    t.expect("Other constraints");
    t.send("no new dependencies");
    t.expect("How many experiments? (a number, or unlimited) [unlimited]: ");
    t.send("5");
    t.expect("Stop after how long?");
    t.send("1h");
    t.expect("Memory limit");
    t.send("1GiB");
    t.expect("CPU-time limit");
    t.send("");
    t.expect("Dedicated cores");
    t.send("");
    t.expect("Which proposer?");
    t.expect("choice [agent]: ");
    t.send("patches");
    t.expect("Folder of *.patch files (relative to the spec file) [hypotheses]: ");
    t.send("hyp");
    t.expect("1 patch file there");
    t.expect("Proceed with this policy?");
    t.send("y");
    t.expect("Run id (names the branch autoresearch/<id>) [lower-the-score]: ");
    // A bad id gets a slug of itself suggested.
    t.send("Lower The Score!");
    t.expect("try \"lower-the-score\"");
    t.expect("[lower-the-score]: ");
    t.send("");
    // The confirmation table, then a second pass over the answers with them as defaults.
    t.expect("| Goal              | Lower the score");
    t.expect("| Trial reading     | 100.0");
    t.expect("| Constraints       | guard sane: `test -f src/value.txt`; no new dependencies");
    t.expect("Write autoresearch.toml?");
    t.expect("choice [yes]: ");
    t.send("edit");
    t.expect("[Lower the score]: ");
    t.send("Lower the score a lot");
    t.expect("[./metric.sh]: ");
    t.send("");
    t.expect("choice [regex]: ");
    t.send("");
    t.expect("[score: ([0-9]+)]: ");
    t.send("");
    t.expect("metric unchanged: it read 100.0");
    t.expect("choice [lower]: ");
    t.send("");
    t.expect("(in scope)? [src/**]: ");
    t.send("");
    t.expect("(out of scope)? [src/other.txt]: ");
    t.send("");
    t.expect("Keep these guards? (y/n) [y]: ");
    t.send("");
    t.expect("(empty when done): ");
    t.send("");
    t.expect("[no new dependencies]: ");
    t.send("");
    t.expect("[5]: ");
    t.send("7");
    t.expect("[1h]: ");
    t.send("");
    t.expect("[1GiB]: ");
    t.send("");
    t.expect("CPU-time limit (e.g. 10m, or none) [none]: ");
    t.send("");
    t.expect("Dedicated cores (e.g. 1, or none) [none]: ");
    t.send("");
    t.expect("choice [patches]: ");
    t.send("");
    t.expect("[hyp]: ");
    t.send("");
    t.expect("Proceed with this policy?");
    t.send("n");
    t.expect("[lower-the-score]: ");
    t.send("");
    t.expect("| Simplicity policy | off");
    t.expect("choice [yes]: ");
    t.send("y");
    t.expect("wrote autoresearch.toml (run id lower-the-score)");
    t.expect("arctl start autoresearch.toml");
    let st = t.wait(Duration::from_secs(20));
    assert!(st.success(), "exit {st:?}; output:\n{}", t.output());

    let spec = repo.join("autoresearch.toml");
    let v = w.json(&["validate", spec.to_str().unwrap(), "--json"]);
    let s = &v["spec"];
    assert_eq!(s["goal"], "Lower the score a lot");
    assert_eq!(s["metric"]["command"], "./metric.sh");
    assert_eq!(s["metric"]["regex"], "score: ([0-9]+)");
    assert_eq!(s["scope"]["include"], serde_json::json!(["src/**"]));
    assert_eq!(s["scope"]["exclude"], serde_json::json!(["src/other.txt"]));
    assert_eq!(s["guard"][0]["command"], "test -f src/value.txt");
    assert_eq!(s["budget"]["max_experiments"], 7);
    assert_eq!(s["budget"]["max_wall"], "1h");
    assert_eq!(s["limits"]["memory"], "1GiB");
    assert_eq!(s["proposer"]["kind"], "patches");
    assert_eq!(s["proposer"]["dir"], "hyp");
    assert_eq!(s["policy"]["simplicity"], false);
    assert_eq!(
        s["policy"]["constraints"],
        serde_json::json!(["no new dependencies"])
    );
}

#[test]
fn ctrl_c_in_the_dialogue_writes_nothing() {
    let w = World::new();
    let repo = project(&w);
    let mut cmd = w.cmd();
    cmd.current_dir(&repo)
        .args([
            "init",
            "--preset",
            "pytest-passrate",
            "--set",
            "metric.command=echo 4 passed",
        ])
        .args([
            "--set",
            "scope.include=src/**",
            "--set",
            "proposer.command=claude -p",
        ]);
    let mut t = pty::Pty::spawn(cmd);
    t.expect("preset pytest-passrate");
    // Enter through every question: the preset and --set values are the defaults.
    for prompt in [
        "[Make more of the test suite pass]: ",
        "[echo 4 passed]: ",
        "choice [regex]: ",
        "[([0-9]+) passed]: ",
    ] {
        t.expect(prompt);
        t.send("");
    }
    t.expect("read 4.0 from its output");
    t.expect("choice [higher]: ");
    t.send("");
    t.expect("(in scope)? [src/**]: ");
    t.send("");
    t.expect("(out of scope)? [none]: ");
    t.send("");
    t.expect("Add a guard");
    t.send_raw(b"\x03");
    let st = t.wait(Duration::from_secs(20));
    assert!(!st.success());
    assert!(!repo.join("autoresearch.toml").exists());
}

#[test]
fn a_spec_written_outside_the_repo_points_back_at_it() {
    let w = World::new();
    let repo = project(&w);
    std::fs::create_dir_all(w.path().join("specs")).unwrap();
    let o = init_in(
        &w,
        &repo,
        &[
            "--non-interactive",
            "-o",
            "../specs/score.toml",
            "--set",
            "metric.command=./metric.sh",
            "--set",
            "metric.direction=lower",
            "--set",
            "scope.include=src/value.txt",
            "--set",
            "proposer.command=claude -p",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let spec = w.path().join("specs/score.toml");
    assert!(std::fs::read_to_string(&spec)
        .unwrap()
        .contains("repo = \"../proj\""));
    let v = w.json(&["validate", spec.to_str().unwrap(), "--json"]);
    assert_eq!(v["repo"], repo.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(v["id"], "score");
}
