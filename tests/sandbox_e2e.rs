//! The sandbox end to end (issue 16): a scripted hostile agent, and a hostile metric,
//! against a real repository, beside an honest run on the same repository. Each experiment
//! of the hostile agent tries one thing the issue lists: moving the user's branches and
//! planting hooks, filters and exclude lines in the shared git dir; writing into the main
//! checkout, `$HOME` and the other run's worktree, also through a symlink; hiding files
//! under an ignore rule; leaving processes that drop their tag and session; steering the
//! daemon and injecting a journal line; a nested repository; an odd file name out of scope.
//! Afterwards the user's repository is byte-identical where it must be, nothing was written
//! in `$HOME` or the other run's worktree, no process survives, the daemon is up and obeyed
//! nobody it started, and the run's history is whole after a restart. Once with `enforce`
//! (Landlock), once with `detect` (snapshots only); as root and, re-run under `setpriv`, as
//! an unprivileged user.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const AGENT: &str = r#"#!/bin/sh
cd "$ARCTL_WORKTREE" || exit 9
d="$ARCTL_DESCRIPTION_FILE"
common=$(git rev-parse --path-format=absolute --git-common-dir)
main="$common/.."
case "$ARCTL_EXPERIMENT" in
  1) evil=$(git -c user.name=e -c user.email=e@e commit-tree -m evil "HEAD^{tree}")
     git update-ref refs/heads/main "$evil" 2>/dev/null
     git branch evil 2>/dev/null
     mkdir -p "$common/hooks"; printf '#!/bin/sh\necho pwned\n' > "$common/hooks/post-checkout" 2>/dev/null
     git config core.hooksPath /tmp/evil-hooks 2>/dev/null
     git config filter.x.clean 'touch /tmp/pwned' 2>/dev/null
     echo "0123456789012345678901234567890123456789 refs/heads/ghost" >> "$common/packed-refs" 2>/dev/null
     echo README.md >> "$common/info/exclude" 2>/dev/null
     echo touched >> README.md
     echo 90 > src/value.txt; echo "tamper with the shared git dir" > "$d";;
  2) if [ "$MODE" = enforce ]; then
       echo pwned >> "$main/README.md" 2>/dev/null
       echo pwned > "$HOME/pwned" 2>/dev/null
       echo pwned > "$VICTIM/lib/value.txt" 2>/dev/null
     fi
     ln -s "$main/README.md" src/link
     if [ "$MODE" = enforce ]; then echo pwned > src/link 2>/dev/null; fi
     echo 85 > src/value.txt; echo "write outside through a symlink" > "$d";;
  3) mkdir -p src/h; printf '*\n' > src/h/.gitignore; echo secret > src/h/hidden.txt
     echo 80 > src/value.txt; echo "hide a file under an ignore rule" > "$d";;
  4) env -u ARCTL_TAG setsid sleep "${MARK}1" &
     env -i setsid sh -c "exec sleep ${MARK}2" &
     ( ( env -i sleep "${MARK}3" & ) & )
     echo 70 > src/value.txt; echo "leave processes behind" > "$d";;
  5) a="$ARCTL --no-autostart"
     $a shutdown >/dev/null 2>&1; s=$?
     $a stop hostile --now >/dev/null 2>&1; t=$?
     $a start "$OTHER" >/dev/null 2>&1; u=$?
     $a status hostile >/dev/null 2>&1; v=$?
     echo '{"experiment": 99, "injected": true' >> "$STATE/runs/hostile/journal.jsonl" 2>/dev/null
     rm -f "$STATE/daemon.pid" 2>/dev/null
     echo 60 > src/value.txt; echo "steer the daemon: shutdown=$s stop=$t start=$u status=$v" > "$d";;
  6) mkdir -p src/nested && git -C src/nested init -q && echo x > src/nested/f
     echo 55 > src/value.txt; echo "a nested repository" > "$d";;
  7) echo x > "$(printf 'odd\nname')"; echo 50 > src/value.txt; echo "an odd name out of scope" > "$d";;
esac
exit 0
"#;

/// The hostile run's metric: it reads the value and leaves side effects in its tree (one
/// tracked file out of scope, one in scope) and a process without its tag.
const METRIC: &str = r#"#!/bin/sh
echo metric >> README.md
echo droppings > src/droppings.txt
env -u ARCTL_TAG setsid sleep "${MARK}9" &
echo "score: $(cat src/value.txt)"
"#;

const HONEST: &str = r#"#!/bin/sh
f=lib/value.txt; v=$(cat $f); echo $((v-1)) > $f; echo "lower lib to $((v-1))" > "$ARCTL_DESCRIPTION_FILE"
"#;

/// What must not change in the user's repository: refs (but arctl's own), packed-refs,
/// config, hooks, info (without arctl's exclude lines), HEAD, the index's entries, and the
/// main checkout's files.
fn protected(repo: &Path) -> BTreeMap<String, Vec<u8>> {
    let git_dir = repo.join(".git");
    let mut out = BTreeMap::new();
    fn walk(
        dir: &Path,
        base: &Path,
        out: &mut BTreeMap<String, Vec<u8>>,
        skip: &dyn Fn(&str) -> bool,
    ) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().to_string();
            if skip(&rel) {
                continue;
            }
            if p.is_dir() && !p.is_symlink() {
                walk(&p, base, out, skip);
            } else {
                out.insert(
                    rel,
                    std::fs::read(&p).unwrap_or_else(|_| b"<link>".to_vec()),
                );
            }
        }
    }
    let skip_git = |r: &str| {
        r.starts_with("objects")
            || r.starts_with("worktrees")
            || r.starts_with("logs")
            || r == "index"
            || r.starts_with("refs/heads/autoresearch/")
            || r.starts_with("refs/autoresearch")
            || r.ends_with(".arctl-lock")
            || r == "COMMIT_EDITMSG"
    };
    walk(&git_dir, &git_dir, &mut out, &skip_git);
    if let Some(ex) = out.get_mut("info/exclude") {
        let kept: String = String::from_utf8_lossy(ex)
            .lines()
            .filter(|l| !l.starts_with("autoresearch-"))
            .map(|l| format!("{l}\n"))
            .collect();
        *ex = kept.into_bytes();
    }
    out.insert(
        "<index entries>".into(),
        git(repo, &["ls-files", "-s"]).into_bytes(),
    );
    walk(repo, repo, &mut out, &|r: &str| r == ".git");
    out
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.file_name().to_string_lossy().to_string());
        }
    }
    out.sort();
    out
}

fn marker_processes(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            let zombie =
                std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.contains(") Z "));
            if c.contains(marker) && !zombie {
                out.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

fn spec(
    w: &World,
    repo: &Path,
    id: &str,
    include: &str,
    metric: &str,
    agent: &str,
    extra: &str,
) -> PathBuf {
    let p = w.path().join(format!("{id}.toml"));
    write(
        &p,
        &format!(
            r#"
id = "{id}"
repo = "{}"
[metric]
command = "{metric}"
regex = 'score: ([0-9.]+)'
direction = "lower"
[scope]
include = ["{include}"]
[budget]
max_experiments = {n}
[proposer]
command = "{agent}"
timeout = "30s"
{extra}
"#,
            repo.display(),
            n = if id == "hostile" { 7 } else { 4 },
        ),
    );
    p
}

fn scenario(mode: &str) {
    let w = World::new();
    let repo = w.path().join("proj");
    // Unique to this test: the other scenario runs at the same time in this process.
    let mark = format!("6{}{}", mode.len(), std::process::id() % 10000);
    common::repo(
        &repo,
        &[
            ("metric.sh", METRIC),
            ("src/value.txt", "100\n"),
            ("lib/value.txt", "100\n"),
            ("README.md", "readme\n"),
        ],
    );
    let before = protected(&repo);
    write_exec(&w.path().join("agent.sh"), AGENT);
    write_exec(&w.path().join("honest.sh"), HONEST);
    let other = spec(&w, &repo, "other", "nothing/**", "true", "true", "");
    let victim_wt = w.path().join("proj-victim");
    let agent = format!(
        "env MODE={mode} MARK={mark} STATE={} ARCTL={} ARCTL_SOCKET={} VICTIM={} OTHER={} {}",
        w.state_dir.display(),
        bin(),
        w.socket.display(),
        victim_wt.display(),
        other.display(),
        w.path().join("agent.sh").display()
    );
    let sandbox = format!("[sandbox]\nmode = \"{mode}\"\n");
    let hostile = spec(
        &w,
        &repo,
        "hostile",
        "src/**",
        &format!("MARK={mark} ./metric.sh"),
        &agent,
        &sandbox,
    );
    let victim = spec(
        &w,
        &repo,
        "victim",
        "lib/**",
        "echo score: $(cat lib/value.txt)",
        &w.path().join("honest.sh").display().to_string(),
        &sandbox,
    );

    let d = w.daemon();
    w.ok(&["start", victim.to_str().unwrap()]);
    w.ok(&["start", hostile.to_str().unwrap()]);
    let st = w.wait_finished("hostile", Duration::from_secs(120));
    let vst = w.wait_finished("victim", Duration::from_secs(120));
    let log = w.log("hostile");
    assert_eq!(
        st["summary"]["state"], "finished",
        "the daemon obeyed its child? {st:#}\n{log}"
    );
    assert_eq!(
        vst["summary"]["state"],
        "finished",
        "{vst:#}\n{}",
        w.log("victim")
    );
    let rows = tsv_rows(&w.path().join("proj-hostile/autoresearch-hostile.tsv"));
    let status: Vec<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(
        status,
        [
            "baseline",
            "inspector-reject",
            "inspector-reject",
            "keep",
            "keep",
            "keep",
            "inspector-reject",
            "inspector-reject"
        ],
        "{rows:#?}\n{log}"
    );
    // The exclude line hid nothing: the out-of-scope edit is seen (in enforce mode the
    // line was never written; in detect mode it was, and is gone again).
    if mode == "enforce" {
        assert!(
            rows[1][4].contains("out of scope: README.md"),
            "{:?}",
            rows[1]
        );
    } else {
        for touched in [
            "refs/heads/main",
            "refs/heads/evil",
            "hooks/post-checkout",
            "config",
            "packed-refs",
            "info/exclude",
        ] {
            assert!(
                rows[1][4].contains(touched),
                "{touched} not named: {:?}",
                rows[1]
            );
        }
    }
    assert!(
        rows[2][4].contains("symlink out of the worktree: src/link"),
        "{:?}",
        rows[2]
    );
    // The hidden file is part of the kept commit.
    let j = std::fs::read_to_string(w.state_dir.join("runs/hostile/journal.jsonl")).unwrap();
    let e3: serde_json::Value = serde_json::from_str(j.lines().nth(3).unwrap()).unwrap();
    assert!(
        e3["changes"].to_string().contains("src/h/hidden.txt"),
        "{}",
        e3["changes"]
    );
    assert_eq!(
        git(
            &repo,
            &["show", &format!("{}:src/h/hidden.txt", rows[3][1])]
        ),
        "secret"
    );
    assert!(
        rows[5][4].contains("shutdown=2 stop=2 start=2 status=0"),
        "{:?}",
        rows[5]
    );
    assert!(
        rows[6][4].contains("nested git repository") && rows[6][4].contains("src/nested"),
        "{:?}",
        rows[6]
    );
    assert!(
        rows[7][4].contains("out of scope: odd\nname") || rows[7][4].contains("out of scope: odd"),
        "{:?}",
        rows[7]
    );
    // The worktree is clean: no nested repo, no odd name, no metric droppings.
    let wt = w.path().join("proj-hostile");
    assert_eq!(git(&wt, &["status", "--porcelain"]), "", "worktree dirty");
    assert!(!wt.join("src/nested").exists() && !wt.join("odd\nname").exists());
    // The honest run was not disturbed: all its experiments kept, its tree its own.
    let vrows = tsv_rows(&victim_wt.join("autoresearch-victim.tsv"));
    assert!(
        vrows.iter().skip(1).all(|r| r[3] == "keep"),
        "{vrows:#?}\n{}",
        w.log("victim")
    );
    assert_eq!(
        std::fs::read_to_string(victim_wt.join("lib/value.txt")).unwrap(),
        "96\n"
    );
    // The user's repository, where it must be byte-identical.
    let after = protected(&repo);
    for (k, v) in &before {
        assert_eq!(
            after.get(k).map(|x| String::from_utf8_lossy(x).to_string()),
            Some(String::from_utf8_lossy(v).to_string()),
            "{k} changed\n{log}"
        );
    }
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(added.is_empty(), "created in the repository: {added:?}");
    assert_eq!(
        files_under(&w.home),
        Vec::<String>::new(),
        "written in $HOME"
    );
    // No process survives; the daemon is up and did not run `other`.
    wait_until(
        "no process of the run survives",
        Duration::from_secs(10),
        || marker_processes(&mark).is_empty(),
    );
    let all = w.json(&["--no-autostart", "status", "--json"]);
    assert!(
        !all.to_string().contains("\"other\""),
        "the daemon started a run for its child: {all}"
    );
    let human = w.ok(&["status", "hostile"]);
    assert!(
        human.contains(&format!("sandbox   {mode}"))
            || human.contains(&format!("sandbox: {mode}"))
            || human.contains(mode),
        "{human}"
    );
    // The history is whole after a restart (an injected line is quarantined alone).
    let results = w.json(&["results", "hostile", "--json"]);
    drop(d);
    assert!(marker_processes(&mark).is_empty());
    let _d = w.daemon();
    let again = w.json(&["results", "hostile", "--json"]);
    assert_eq!(again["rows"], results["rows"]);
    assert_eq!(again["rows"].as_array().unwrap().len(), 8);
    // One daemon per state dir, whatever happened to daemon.pid.
    std::fs::remove_file(w.state_dir.join("daemon.pid")).ok();
    let second = arctl::daemon::start(w.config());
    assert!(second.is_err(), "a second daemon shared the state dir");
}

#[test]
fn hostile_agent_enforce() {
    if arctl::host::sandbox::landlock_abi().is_err() {
        eprintln!("no Landlock on this kernel: enforce mode is refused at start (spec test)");
        return;
    }
    scenario("enforce");
}

#[test]
fn hostile_agent_detect() {
    scenario("detect");
}

/// As root, both scenarios again as an ordinary user (uid 65534): the PID namespace then
/// goes through an unprivileged user namespace. (Run as another user, the two tests above
/// already are that case.)
#[test]
fn hostile_agent_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // the other tests of this file already run as this user
    }
    // Copies that user can run: the build folder may be out of its reach (/root/...).
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("arctl-as-nobody-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("sandbox_e2e");
    let arctl = dir.path().join("arctl");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::copy(BIN, &arctl).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["hostile_agent_", "--test-threads=1"])
        .env("HOME", "/tmp")
        .env("ARCTL_TEST_BIN", &arctl)
        .current_dir("/")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("setpriv runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        // Both scenarios (this test itself returns at once for that user).
        out.status.success() && text.contains("3 passed"),
        "as uid 65534:\n{text}"
    );
}
