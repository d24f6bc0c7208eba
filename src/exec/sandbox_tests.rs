//! Tests of containment and the sandbox with real processes: what a hostile command tries
//! (escaping its tree, writing outside its folders, the network, signalling its parent) and
//! what it must keep (its output files, /dev/null, loopback when it has the network).

use super::*;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;
use tempfile::TempDir;

fn tag(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "arctl-sbtest-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn spec(dir: &Path, name: &str, command: &str) -> CommandSpec {
    CommandSpec::new(
        command,
        dir,
        dir.join(format!("{name}.out")),
        dir.join(format!("{name}.err")),
        tag(name),
    )
}

fn sandboxed(s: &CommandSpec, sb: &Sandbox) -> Outcome {
    run_sandboxed(s, sb, &Cancel::new()).unwrap_or_else(|e| panic!("run {:?}: {e}", s.command))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Live processes whose command line contains `marker`.
fn with_marker(marker: &str) -> Vec<u32> {
    procfs::all_pids()
        .into_iter()
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .filter(|&p| procfs::read_stat(p).is_some_and(|s| !s.is_dead()))
        .collect()
}

fn isolated() -> Sandbox {
    Sandbox {
        isolate: true,
        ..Sandbox::default()
    }
}

/// Escapes that drop the tag, the session and the parent: none survives, in a PID
/// namespace and with the subreaper alike.
#[test]
fn escapes_without_the_tag_do_not_survive() {
    for (name, sb) in [("ns", isolated()), ("subreaper", Sandbox::default())] {
        let dir = TempDir::new().unwrap();
        let marker = format!("60{}{}", std::process::id() % 1000, name.len());
        let script = format!(
            "env -u ARCTL_TAG setsid sleep {marker}1 &\n\
             env -i setsid sh -c 'exec sleep {marker}2' &\n\
             ( ( env -i sleep {marker}3 & ) & )\n\
             sleep 0.2; echo started"
        );
        let s = spec(dir.path(), name, &script);
        let t = Instant::now();
        let o = sandboxed(&s, &sb);
        assert_eq!(
            o.exit,
            Exit::Code { code: 0 },
            "{name}: {}",
            read(&s.stderr)
        );
        assert_eq!(read(&s.stdout), "started\n", "{name}");
        let left = with_marker(&marker);
        assert!(left.is_empty(), "{name}: survivors {left:?}");
        assert!(
            t.elapsed() < TERM_GRACE + Duration::from_secs(4),
            "{name}: {:?}",
            t.elapsed()
        );
        assert!(running_pids(&s.tag).is_empty(), "{name}");
    }
}

/// A double-forked child without the tag, in its own session, allocating past the limit,
/// is counted and killed.
#[test]
fn memory_of_an_escaped_child_counts() {
    let dir = TempDir::new().unwrap();
    let script = "env -i setsid sh -c '( exec python3 -c \"import time; b = bytearray(400 << 20); time.sleep(60)\" & )' & sleep 60";
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_err()
    {
        panic!("python3 is needed for this test");
    }
    for sb in [isolated(), Sandbox::default()] {
        let mut s = spec(dir.path(), "mem", script);
        s.limits.memory = Some(200 << 20);
        s.timeout = Some(Duration::from_secs(30));
        let o = sandboxed(&s, &sb);
        assert_eq!(o.exit, Exit::MemoryLimit, "{}", read(&s.stderr));
    }
}

/// Landlock: the writable folders and the output files (also through /dev/stderr), /dev/null
/// and /dev/shm are writable; nothing else is, reads stay open.
#[test]
fn landlock_confines_writes() {
    if crate::host::sandbox::landlock_abi().is_err() {
        return; // no Landlock here: the spec check refuses mode = "enforce" (tested there)
    }
    let root = TempDir::new().unwrap();
    let (inside, outside) = (root.path().join("in"), root.path().join("out"));
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), "precious\n").unwrap();
    let script = "echo a > mine; mkdir -p sub/deep && echo b > sub/deep/f; mv mine sub/; \
        echo to-err >/dev/stderr; echo x > /dev/null; \
        cat ../out/keep; \
        (echo bad > ../out/new) 2>/dev/null && echo WROTE-NEW; \
        (echo bad >> ../out/keep) 2>/dev/null && echo APPENDED; \
        rm -f ../out/keep 2>/dev/null; ln -s ../out/keep link 2>/dev/null; \
        (echo evil > link) 2>/dev/null && echo THROUGH-LINK; \
        true";
    let s = spec(&inside, "ll", script);
    let sb = Sandbox {
        writable: Some(vec![inside.clone()]),
        isolate: true,
        network: true,
    };
    let o = sandboxed(&s, &sb);
    assert!(o.exit.success(), "{}", read(&s.stderr));
    assert_eq!(read(&s.stdout), "precious\n");
    assert!(read(&s.stderr).contains("to-err"));
    assert_eq!(read(&inside.join("sub/mine")), "a\n");
    assert_eq!(read(&inside.join("sub/deep/f")), "b\n");
    assert_eq!(read(&outside.join("keep")), "precious\n");
    assert!(!outside.join("new").exists());
}

/// network = false: no route out, not even to the host's loopback; loopback of its own
/// works. With the network, the host's loopback is reachable.
#[test]
fn network_namespace_cuts_the_network() {
    if crate::host::sandbox::namespaces().net.is_err() {
        return; // the spec check refuses network = false here (tested there)
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = TempDir::new().unwrap();
    let probe = format!(
        "bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo reached || echo unreachable"
    );
    let with = sandboxed(&spec(dir.path(), "net-on", &probe), &isolated());
    assert!(with.exit.success());
    assert_eq!(read(&dir.path().join("net-on.out")), "reached\n");
    let off = Sandbox {
        network: false,
        ..isolated()
    };
    let without = sandboxed(&spec(dir.path(), "net-off", &probe), &off);
    assert!(without.exit.success());
    assert_eq!(read(&dir.path().join("net-off.out")), "unreachable\n");
    // Its own loopback is up: a server inside is reachable from inside.
    let lo = "cat /proc/net/dev | grep -c ':' ; grep -q 'lo:' /proc/net/dev && echo has-lo";
    sandboxed(&spec(dir.path(), "lo", lo), &off);
    assert_eq!(read(&dir.path().join("lo.out")), "1\nhas-lo\n");
}

/// In a PID namespace the command sees its own tree only and cannot signal this process;
/// with Landlock's signal scoping (ABI >= 6) neither can a subreaper's tree.
#[test]
fn children_cannot_signal_the_daemon() {
    let me = std::process::id();
    let dir = TempDir::new().unwrap();
    let cmd = format!(
        "kill -0 {me} 2>/dev/null && echo can-signal || echo cannot; ls /proc | grep -c '^[0-9]'"
    );
    let s = spec(dir.path(), "sig-ns", &cmd);
    sandboxed(&s, &isolated());
    let out = read(&s.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("cannot"), "{out}");
    let visible: usize = lines.next().unwrap().parse().unwrap();
    assert!(
        visible <= 6,
        "{visible} processes visible in the namespace's /proc"
    );
    if crate::host::sandbox::landlock_abi().is_ok_and(|abi| abi >= 6) {
        let s = spec(dir.path(), "sig-ll", &cmd);
        let sb = Sandbox {
            writable: Some(vec![dir.path().to_path_buf()]),
            ..Sandbox::default()
        };
        sandboxed(&s, &sb);
        assert!(
            read(&s.stdout).starts_with("cannot\n"),
            "{}",
            read(&s.stdout)
        );
    }
}

/// The running trees are known: their pids are listed, and a member is recognised as
/// started by arctl (what the daemon's peer check asks), while this process is not.
#[test]
fn running_trees_are_listed_and_recognised() {
    let dir = TempDir::new().unwrap();
    let s = spec(dir.path(), "tree", "setsid sh -c 'sleep 30' & sleep 30");
    let tag = s.tag.clone();
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || run_sandboxed(&s, &isolated(), &c2));
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let r = running_pids(&tag);
        if r.first().is_some_and(|(_, p)| p.len() >= 4) {
            break r[0].1.clone();
        }
        assert!(Instant::now() < deadline, "tree never sampled: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for p in &pids {
        assert_eq!(started_by_arctl(*p), Some(true), "pid {p} of {pids:?}");
    }
    assert_eq!(started_by_arctl(std::process::id()), Some(false));
    cancel.cancel();
    let o = t.join().unwrap().unwrap();
    assert_eq!(o.exit, Exit::Cancelled);
    assert!(running_pids(&tag).is_empty());
    assert!(pids
        .iter()
        .all(|&p| procfs::read_stat(p).is_none_or(|s| s.is_dead())));
}
