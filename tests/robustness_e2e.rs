//! The daemon and the CLI keep their footing under floods and nonsense: connection floods
//! that announce huge frames or trickle them, idle connections that hold every slot, a
//! scarce file-descriptor limit, absurd durations and sizes, unbounded spec files, closed
//! stdouts, a socket the user may not open, and `validate`'s checks of the repository.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn read_frame(s: &mut UnixStream) -> Option<serde_json::Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

fn hello(w: &World) -> UnixStream {
    let mut s = UnixStream::connect(&w.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(br#"{"type":"hello","version":1}"#))
        .unwrap();
    assert_eq!(read_frame(&mut s).unwrap()["type"], "hello");
    s
}

/// `VmHWM` (peak) and `VmRSS` of a process, in MiB.
fn memory_mib(pid: i32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// `arctl status` answers, and how long it took.
fn status_answers(w: &World) -> Duration {
    let t = Instant::now();
    let o = w.arctl(&["--no-autostart", "status", "--json"]);
    assert!(
        o.status.success(),
        "status during the flood: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed()
}

#[test]
fn a_connection_flood_neither_grows_the_daemon_nor_silences_it() {
    let w = World::new();
    let d = DaemonProcess::spawn(&w);
    let (_, rss_before) = memory_mib(d.pid());
    // 300 connections announcing 16 MiB each: refused at the length, nothing allocated.
    let mut huge = Vec::new();
    for _ in 0..300 {
        let mut s = hello(&w);
        s.write_all(&(16u32 << 20).to_be_bytes()).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.write(&[b'x'; 64 * 1024]);
        huge.push(s);
    }
    status_answers(&w);
    // 300 more announcing a legal 2 MiB request and sending half of it, then stalling:
    // memory is bounded by the daemon-wide budget for big requests.
    let mut trickle = Vec::new();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..300 {
        let mut s = hello(&w);
        s.write_all(&((2u32 << 20) - 16).to_be_bytes()).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut sent = 0;
        while sent < chunk.len() {
            match s.write(&chunk[sent..]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        trickle.push(s);
    }
    let took = status_answers(&w);
    let (peak, _) = memory_mib(d.pid());
    eprintln!(
        "daemon RSS {rss_before:.1} MiB before, peak {peak:.1} MiB during a 600-connection flood; status answered in {took:?}"
    );
    assert!(
        peak < rss_before + 80.0,
        "peak {peak:.1} MiB (before {rss_before:.1})"
    );
    drop(huge);
    drop(trickle);
    // Memory is handed back once they are gone.
    wait_until(
        "the daemon to give the memory back",
        Duration::from_secs(40),
        || {
            let _ = w.arctl(&["--no-autostart", "status"]);
            memory_mib(d.pid()).1 < rss_before + 32.0
        },
    );
}

#[test]
fn idle_connections_cannot_lock_everyone_out_and_fd_exhaustion_does_not_spin() {
    use std::os::unix::process::CommandExt;
    let w = World::new();
    // 64 file descriptors: the daemon serves at most 16 connections at once.
    let d = DaemonProcess::spawn_with(&w, |c| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            c.pre_exec(|| {
                let l = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let t0 = Instant::now();
    let cpu = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
    };
    let cpu0 = cpu(d.pid());
    let mut held = Vec::new();
    for _ in 0..120 {
        match UnixStream::connect(&w.socket) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    // Connections left idle are closed once someone needs their slot.
    std::thread::sleep(Duration::from_secs(6)); // the idle threshold before eviction
    status_answers(&w);
    status_answers(&w);
    let spent = cpu(d.pid()) - cpu0;
    let window = t0.elapsed().as_secs_f64();
    drop(held);
    let log = std::fs::read_to_string(w.path().join("daemon.log")).unwrap();
    let accept_lines = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        accept_lines <= 3,
        "{accept_lines} accept-failure lines:\n{log}"
    );
    assert!(
        spent < window * 0.3,
        "the daemon spent {spent:.2}s of CPU in {window:.1}s"
    );
}

const SPEC: &str = "[metric]\ncommand = \"./metric.sh\"\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[proposer]\ncommand = \"true\"\n";

fn project(w: &World) -> std::path::PathBuf {
    let repo = w.path().join("proj");
    common::repo(
        &repo,
        &[("metric.sh", METRIC_SH), ("src/value.txt", "100\n")],
    );
    repo
}

#[test]
fn absurd_durations_sizes_and_factors_are_bad_input_not_panics() {
    let w = World::new();
    let repo = project(&w);
    let cases = [
        ("[budget]\nmax_wall = \"99999999999999999h\"\n", "max_wall"),
        (
            "[[guard]]\nname = \"t\"\ncommand = \"true\"\ntimeout = \"99999999999999999999s\"\n",
            "timeout",
        ),
        ("", "1e30x"),
        ("[limits]\nmemory = \"99999999999TiB\"\n", "memory"),
    ];
    let _d = w.daemon();
    for (i, (extra, what)) in cases.iter().enumerate() {
        let mut text = format!("id = \"absurd{i}\"\n{SPEC}{extra}");
        if *what == "1e30x" {
            text = text.replace("direction", "timeout = \"1e30x\"\ndirection");
        }
        let spec = repo.join(format!("absurd{i}.toml"));
        write(&spec, &text);
        for cmd in ["validate", "start"] {
            let o = w.arctl(&[cmd, spec.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{cmd} {what}: {err}");
            assert!(
                err.contains(&format!("absurd{i}.toml:")) && !err.contains("panic"),
                "{cmd} {what}: {err}"
            );
        }
        // Over the socket, bypassing the client's check: bad input too, the daemon stays up.
        let mut s = hello(&w);
        let req = serde_json::json!({"type": "start", "spec_path": spec, "spec_text": text});
        s.write_all(&frame(req.to_string().as_bytes())).unwrap();
        let r = read_frame(&mut s).unwrap();
        assert_eq!(r["kind"], "bad_input", "{what}: {r}");
    }
    assert_eq!(w.json(&["status", "--json"])["runs"], serde_json::json!([]));
}

#[test]
fn start_reads_no_unbounded_file() {
    let w = World::new();
    let t = Instant::now();
    let o = w.arctl(&["--no-autostart", "start", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("larger than 1024 KiB"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    let o = w.arctl(&["validate", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let w = World::new();
    let repo = project(&w);
    let spec = repo.join("s.toml");
    write(&spec, SPEC);
    let _d = w.daemon();
    let closed = || {
        let (r, wr) = nix::unistd::pipe().unwrap();
        drop(r); // nobody reads: every write fails with EPIPE
        Stdio::from(wr)
    };
    for args in [
        vec!["validate", "--json", spec.to_str().unwrap()],
        vec!["status", "--json"],
        vec!["demo", "--dir", w.path().join("demo").to_str().unwrap()],
    ] {
        let o = w.cmd().args(&args).stdout(closed()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn validate_checks_the_repository_and_warns_about_the_scope() {
    let w = World::new();
    let repo = project(&w);
    let run = |spec: &str, extra: &[&str]| {
        let path = w.path().join("specs").join("v.toml");
        write(&path, spec);
        let mut args = vec!["validate"];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        let o = w.arctl(&args);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let at = |dir: &std::path::Path| format!("repo = \"{}\"\n{SPEC}", dir.display());
    // Not a repository; a bare one; one without commits; a missing base.
    let plain = w.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let (code, err) = run(&at(&plain), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a git repository"), "{err}");
    let bare = w.path().join("bare.git");
    git(w.path(), &["init", "-q", "--bare", bare.to_str().unwrap()]);
    let (code, err) = run(&at(&bare), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bare"), "{err}");
    let empty = w.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q", "-b", "main"]);
    let (code, err) = run(&at(&empty), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no commits"), "{err}");
    let (code, err) = run(&format!("base = \"mian\"\n{}", at(&repo)), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("\"mian\" does not exist") && err.contains("branches: main"),
        "{err}"
    );
    // A glob that matches no tracked file, and a judge inside the scope: warnings.
    let typo = at(&repo).replace("[\"src/**\"]", "[\"srcc/**\", \"src/**\", \"metric.sh\"]");
    let (code, err) = run(&typo, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("\"srcc/**\" matches no tracked file"), "{err}");
    assert!(
        err.contains("metric.command runs metric.sh, which is inside the scope"),
        "{err}"
    );
    let (code, _) = run(&typo, &["--strict"]);
    assert_eq!(code, Some(2));
    // `start` prints the same warning.
    let _d = w.daemon();
    let spec = repo.join("typo.toml");
    write(
        &spec,
        &typo.replace(&format!("repo = \"{}\"\n", repo.display()), ""),
    );
    let o = w.arctl(&["start", spec.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("matches no tracked file"));
}

#[test]
fn merge_into_a_bad_branch_name_is_bad_input_even_on_a_dry_run() {
    let w = World::new();
    let _d = w.daemon();
    for name in ["", "a..b", "has space", "-x"] {
        for dry in [true, false] {
            let into = format!("--into={name}");
            let mut args = vec!["merge", into.as_str()];
            if dry {
                args.push("--dry-run");
            }
            let o = w.arctl(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{name:?}: {err}");
            assert!(err.contains("not a valid branch name"), "{name:?}: {err}");
        }
    }
}

#[test]
fn a_socket_the_user_may_not_open_is_named_not_called_not_running() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root to make a socket another uid cannot open");
        return;
    }
    let w = World::new();
    let _d = w.daemon();
    // The world's folders are root's, 0700: uid 65534 may not reach the socket.
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .args(["--no-autostart", "--socket"])
        .arg(&w.socket)
        .args(["--state-dir"])
        .arg(w.path().join("nobody-state"))
        .arg("status")
        .env("HOME", "/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("permission denied on") && err.contains("owned by uid 0"),
        "{err}"
    );
}

#[test]
fn a_metric_printing_a_flood_costs_the_daemon_little_memory_and_disk() {
    let w = World::new();
    let repo = w.path().join("proj");
    // 512 MiB of noise before the number (the README's figure is for 2 GB).
    let metric = "#!/bin/sh\nhead -c 536870912 /dev/zero | tr '\\0' x\necho\necho \"score: $(cat src/value.txt)\"\n";
    common::repo(&repo, &[("metric.sh", metric), ("src/value.txt", "100\n")]);
    write_exec(
        &w.path().join("agent.sh"),
        "#!/bin/sh\necho 90 > src/value.txt\necho lower > \"$ARCTL_DESCRIPTION_FILE\"\n",
    );
    let spec = repo.join("flood.toml");
    write(
        &spec,
        &format!(
            "[metric]\ncommand = \"./metric.sh\"\nregex = 'score: ([0-9]+)'\ndirection = \"lower\"\ntimeout = \"10m\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = 1\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("agent.sh").display()
        ),
    );
    let d = DaemonProcess::spawn(&w);
    let (_, before) = memory_mib(d.pid());
    w.ok(&["start", spec.to_str().unwrap()]);
    let st = w.wait_finished("flood", Duration::from_secs(300));
    let (peak, _) = memory_mib(d.pid());
    assert_eq!(st["summary"]["state"], "finished", "{st}");
    assert_eq!(
        st["summary"]["best"], 90.0,
        "the number after the flood is read"
    );
    let used = dir_bytes(&w.state_dir);
    eprintln!("daemon RSS {before:.1} MiB before, peak {peak:.1} MiB; state dir {used} bytes");
    assert!(peak < 64.0, "daemon peak RSS {peak:.1} MiB");
    assert!(used < 64 << 20, "state dir {used} bytes");
    // The experiment's metric output: its head and tail, the cut named between them.
    let out = std::fs::read(w.state_dir.join("runs/flood/output/1/candidate.out")).unwrap();
    assert!(out.len() < 3 << 20, "{} bytes kept", out.len());
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("bytes of output cut here]") && text.ends_with("score: 90\n"));
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

#[test]
fn a_cpu_limit_hit_by_a_child_is_a_crash_naming_the_limit() {
    let w = World::new();
    let repo = w.path().join("proj");
    // The busy child dies at the limit; the metric script still prints a number, exit 0.
    let metric = "#!/bin/sh\nif [ \"$(cat src/value.txt)\" = busy ]; then sh -c 'while :; do :; done'; fi\necho 'score: 7'\n";
    common::repo(&repo, &[("metric.sh", metric), ("src/value.txt", "100\n")]);
    write_exec(
        &w.path().join("agent.sh"),
        "#!/bin/sh\necho busy > src/value.txt\necho spin > \"$ARCTL_DESCRIPTION_FILE\"\n",
    );
    let spec = repo.join("spin.toml");
    write(
        &spec,
        "[metric]\ncommand = \"./metric.sh\"\nregex = 'score: ([0-9]+)'\ndirection = \"lower\"\ntimeout = \"30s\"\n[scope]\ninclude = [\"src/**\"]\n[limits]\ncpu_time = \"1s\"\n[budget]\nmax_experiments = 1\n[proposer]\nkind = \"patches\"\ndir = \"hyp\"\n",
    );
    write(
        &repo.join("hyp/01.patch"),
        "--- a/src/value.txt\n+++ b/src/value.txt\n@@ -1 +1 @@\n-100\n+busy\n",
    );
    let _d = w.daemon();
    w.ok(&["start", spec.to_str().unwrap()]);
    w.wait_finished("spin", Duration::from_secs(60));
    let rows = tsv_rows(&w.path().join("proj-spin/autoresearch-spin.tsv"));
    assert_eq!(rows[1][3], "crash", "{rows:?}");
    let v = w.json(&["results", "spin", "--json"]);
    let desc = v["rows"][1]["description"].as_str().unwrap().to_string();
    assert!(desc.contains("cpu_time limit"), "{desc}");
}

#[test]
fn a_proposer_or_metric_that_overwrites_its_index_does_not_end_the_run() {
    let w = World::new();
    let repo = w.path().join("proj");
    // The proposer and each run of the metric garble the work tree's index: the next look
    // at it rebuilds it from HEAD (the proposal's check; the revert of the metric's side
    // effects, wherever the metric ran), and every change is still judged and committed.
    let metric = "#!/bin/sh\nhead -c 64 /dev/zero | tr '\\0' x > \"$(git rev-parse --git-dir)/index\"\necho \"score: $(cat src/value.txt)\"\n";
    common::repo(&repo, &[("metric.sh", metric), ("src/value.txt", "100\n")]);
    write_exec(
        &w.path().join("agent.sh"),
        "#!/bin/sh\necho $((100 - ARCTL_EXPERIMENT)) > src/value.txt\necho lower > \"$ARCTL_DESCRIPTION_FILE\"\nhead -c 64 /dev/zero | tr '\\0' y > \"$(git rev-parse --git-dir)/index\"\n",
    );
    let spec = repo.join("garble.toml");
    write(
        &spec,
        &format!(
            "[metric]\ncommand = \"./metric.sh\"\nregex = 'score: ([0-9]+)'\ndirection = \"lower\"\n[scope]\ninclude = [\"src/**\"]\n[budget]\nmax_experiments = 3\n[proposer]\ncommand = \"{}\"\n",
            w.path().join("agent.sh").display()
        ),
    );
    let _d = w.daemon();
    w.ok(&["start", spec.to_str().unwrap()]);
    let v = w.wait_finished("garble", Duration::from_secs(60));
    assert_eq!(v["summary"]["state"], "finished", "{v}");
    let tree = w.path().join("proj-garble");
    let rows = tsv_rows(&tree.join("autoresearch-garble.tsv"));
    let statuses: Vec<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(statuses, ["baseline", "keep", "keep", "keep"], "{rows:?}");
    assert_eq!(
        git(&repo, &["show", "autoresearch/garble:src/value.txt"]),
        "97"
    );
    // The index git reads is whole again, and the tree is its HEAD's.
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    assert!(w.log("garble").contains("keep"), "{}", w.log("garble"));
}
