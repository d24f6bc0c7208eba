//! Prepared worktrees (`[setup]`) end to end: the main checkout's ignored `.env` copied into
//! every tree the metric runs in (the run's worktree, its best tree, a merge's trees), a setup
//! command's untracked output kept as the environment (never a change, never reverted,
//! never committed by the agent's `git add -A`), `[setup] env` in every child; a baseline that
//! fails for want of an ignored file names it; a setup that edits a tracked file fails the run.

mod common;

use std::time::Duration;

use common::*;

/// The metric needs the ignored `.env` (SCALE), the setup's untracked `envdir/marker` and
/// `[setup] env`'s FROM_SPEC: value * SCALE.
const METRIC: &str = r#"#!/bin/sh
. ./.env || { echo "no .env" >&2; exit 3; }
[ -f envdir/marker ] || { echo "no envdir/marker" >&2; exit 4; }
[ "$FROM_SPEC" = "yes" ] || { echo "FROM_SPEC unset" >&2; exit 5; }
echo $(( $(cat src/value.txt) * SCALE ))
"#;

/// Lowers the value by one and commits everything it sees, as a careless agent does.
const AGENT: &str = r#"#!/bin/sh
v=$(cat src/value.txt); echo $((v-1)) > src/value.txt
git add -A && git -c user.name=a -c user.email=a@a commit -qm "lower by one"
echo "lower by one" > "$ARCTL_DESCRIPTION_FILE"
"#;

fn project(w: &World, id: &str, setup: &str) -> std::path::PathBuf {
    let repo = w.path().join("proj");
    if !repo.exists() {
        common::repo(
            &repo,
            &[
                ("metric.sh", METRIC),
                ("src/value.txt", "100\n"),
                (".gitignore", ".env\n"),
                ("README.md", "proj\n"),
            ],
        );
        // Ignored: in the main checkout only, as a user's secrets file is.
        write(&repo.join(".env"), "SCALE=2\n");
    }
    let agent = w.path().join("agent.sh");
    write_exec(&agent, AGENT);
    let spec = repo.join(format!("{id}.toml"));
    write(
        &spec,
        &format!(
            "id = \"{id}\"\n[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = 2\n[proposer]\ncommand = \"{}\"\n{setup}",
            agent.display()
        ),
    );
    spec
}

const SETUP: &str = r#"[setup]
copy = [".env"]
command = "mkdir -p envdir && echo ok > envdir/marker && echo prepared-with-$FROM_SPEC"
env = { FROM_SPEC = "yes" }
"#;

#[test]
fn setup_prepares_every_tree_and_what_it_makes_is_never_a_change() {
    let w = World::new();
    let _d = w.daemon();
    let spec = project(&w, "prep", SETUP);
    let repo = w.path().join("proj");
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished("prep", Duration::from_secs(90));
    let s = &st["summary"];
    assert_eq!(s["state"], "finished", "{s}\n{}", w.log("prep"));
    // Both experiments kept: the metric ran in the worktree and, before each keep, in the
    // best tree, each prepared.
    assert_eq!(s["counts"]["kept"], 2, "{s}\n{}", w.log("prep"));
    assert_eq!(s["best"], 196.0, "{s}");
    let out = std::fs::read_to_string(w.state_dir.join("runs/prep/output/0/setup.out")).unwrap();
    assert_eq!(out.trim(), "prepared-with-yes");
    let log = w.log("prep");
    assert!(log.contains("setup of the worktree"), "{log}");
    assert!(log.contains("setup of the best-tree"), "{log}");
    // What setup made is the environment: not in the kept commits (the agent's `git add -A`
    // skipped it), excluded while the run exists.
    let files = git(
        &repo,
        &["ls-tree", "-r", "--name-only", "autoresearch/prep"],
    );
    assert!(
        !files.contains("envdir") && !files.contains(".env"),
        "{files}"
    );
    let exclude = repo.join(".git/info/exclude");
    assert!(read(&exclude).contains("/envdir/"), "{}", read(&exclude));
    let wt = w.path().join("proj-prep");
    assert_eq!(read(&wt.join("envdir/marker")), "ok\n");
    assert_eq!(read(&wt.join(".env")), "SCALE=2\n");

    // A merge re-measures on top of a moved main, in two new trees prepared the same way.
    write(&repo.join("README.md"), "proj, edited\n");
    git(&repo, &["commit", "-qam", "user edit"]);
    let m = w.json(&["merge", "prep", "--json"]);
    let row = &m["rows"][0];
    assert_eq!(row["status"], "merged", "{m:#}\n{}", w.log("prep"));
    assert_eq!(row["remeasured"], true, "{m:#}");
    assert!(w.log("prep").contains("merge: setup of the candidate tree"));
    assert_eq!(read(&repo.join("src/value.txt")), "98\n");

    // Cleanup takes the exclude lines away again.
    w.ok(&["cleanup", "prep"]);
    assert!(!read(&exclude).contains("/envdir/"), "{}", read(&exclude));
}

#[test]
fn a_baseline_missing_an_ignored_file_names_it_and_a_setup_editing_tracked_files_fails() {
    let w = World::new();
    let _d = w.daemon();
    let spec = project(&w, "bare", "[setup]\nenv = { FROM_SPEC = \"yes\" }\n");
    let err = failed_run_error(&w, &spec, "bare");
    assert!(
        err.contains("lacks: .env.") && err.contains("[setup] copy = [\".env\"]"),
        "{err}"
    );

    let spec = project(
        &w,
        "edits",
        "[setup]\ncopy = [\".env\"]\ncommand = \"echo changed >> README.md\"\n",
    );
    let err = failed_run_error(&w, &spec, "edits");
    assert!(
        err.contains("setup changed tracked files") && err.contains("README.md"),
        "{err}"
    );
}

/// Start the run of `spec` (id `id`), which must fail: its error.
fn failed_run_error(w: &World, spec: &std::path::Path, id: &str) -> String {
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished(id, Duration::from_secs(60));
    assert_eq!(st["summary"]["state"], "failed", "{st:#}");
    st["summary"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
