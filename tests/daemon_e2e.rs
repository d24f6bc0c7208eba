//! The daemon, its socket and the CLI: lifecycle, autostart, permissions, framing, specs.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

#[test]
fn status_is_empty_at_first_with_a_stable_json_shape() {
    let w = World::new();
    let _d = w.daemon();
    let v = w.json(&["status", "--json"]);
    assert_eq!(v, serde_json::json!({"runs": [], "problems": []}));
    let human = w.ok(&["status"]);
    assert!(human.contains("no runs yet"), "{human}");
}

#[test]
fn sigterm_and_shutdown_stop_cleanly_and_later_clients_get_exit_3() {
    let w = World::new();
    for how in ["sigterm", "sigint", "shutdown"] {
        let mut child = DaemonProcess::spawn(&w);
        match how {
            "sigterm" => child.signal(nix::sys::signal::Signal::SIGTERM),
            "sigint" => child.signal(nix::sys::signal::Signal::SIGINT),
            _ => {
                w.ok(&["shutdown"]);
            }
        }
        let status = child.wait();
        assert!(status.success(), "{how}: {status:?}");
        assert!(!w.socket.exists(), "{how}: socket left behind");
        assert!(
            !w.state_dir.join("daemon.pid").exists(),
            "{how}: pid file left behind"
        );
        let o = w.arctl(&["--no-autostart", "status"]);
        assert_eq!(o.status.code(), Some(3), "{how}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("daemon is not running"));
        // shutdown never starts a daemon just to stop it.
        let o = w.arctl(&["shutdown"]);
        assert_eq!(o.status.code(), Some(3), "{how}");
        assert!(!w.socket.exists());
    }
}

#[test]
fn a_client_starts_a_daemon_when_none_answers() {
    let w = World::new();
    assert!(!w.socket.exists());
    let v = w.json(&["status", "--json"]);
    assert_eq!(v["runs"], serde_json::json!([]));
    assert!(w.socket.exists());
    // Same socket and state dir as the client: the pid file names the daemon.
    let pid = std::fs::read_to_string(w.state_dir.join("daemon.pid")).unwrap();
    let pid: i32 = pid.trim().parse().unwrap();
    w.ok(&["shutdown"]);
    wait_until(
        "the autostarted daemon to exit",
        Duration::from_secs(20),
        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() || is_zombie(pid),
    );
    assert!(!w.socket.exists());
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn the_default_socket_path_follows_xdg_runtime_dir() {
    let w = World::new();
    let mut c = w.cmd();
    c.env_remove("ARCTL_SOCKET").args(["status", "--json"]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sock = w.path().join("xdg-run/arctl/arctl.sock");
    assert!(sock.exists());
    let mut c = w.cmd();
    c.env_remove("ARCTL_SOCKET").args(["shutdown"]);
    assert!(c.output().unwrap().status.success());
    wait_until("socket removal", Duration::from_secs(20), || !sock.exists());
}

#[test]
fn socket_is_private_and_a_second_daemon_is_refused() {
    let w = World::new();
    let mut child = DaemonProcess::spawn(&w);
    let mode = std::fs::metadata(&w.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(w.socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    // Same state dir, another socket: the pid lock refuses and names the holder.
    let o = w
        .cmd()
        .args([
            "daemon",
            "--socket",
            w.path().join("other.sock").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {}", child.pid())) && err.contains("state dir"),
        "{err}"
    );
    // Same socket, another state dir: the socket is live, so it is not replaced.
    let o = w
        .cmd()
        .args([
            "daemon",
            "--state-dir",
            w.path().join("state2").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already listening"));

    w.ok(&["shutdown"]);
    child.wait();
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let w = World::new();
    std::fs::create_dir_all(w.socket.parent().unwrap()).unwrap();
    // A socket file nobody listens on, as a killed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&w.socket).unwrap());
    assert!(w.socket.exists());
    let _d = w.daemon();
    assert_eq!(w.json(&["status", "--json"])["runs"], serde_json::json!([]));
}

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

fn raw(w: &World) -> UnixStream {
    let s = UnixStream::connect(&w.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hello(s: &mut UnixStream) {
    s.write_all(&frame(br#"{"type":"hello","version":1}"#))
        .unwrap();
    assert_eq!(read_frame(s).unwrap()["type"], "hello");
}

#[test]
fn malformed_input_gets_an_error_and_the_daemon_keeps_serving() {
    let w = World::new();
    let _d = w.daemon();
    // A client that stays connected through all of this.
    let mut good = raw(&w);
    hello(&mut good);

    // Random bytes instead of a handshake.
    let mut s = raw(&w);
    s.write_all(&frame(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]))
        .unwrap();
    let r = read_frame(&mut s).unwrap();
    assert_eq!(r["type"], "error");
    assert_eq!(r["kind"], "bad_input");

    // A 4 GiB length prefix.
    let mut s = raw(&w);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let r = read_frame(&mut s).unwrap();
    assert!(r["message"].as_str().unwrap().contains("exceeds"), "{r}");

    // A truncated frame, then hang up.
    let mut s = raw(&w);
    hello(&mut s);
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(b"{\"type\":").unwrap();
    drop(s);

    // An unknown request after the handshake.
    let mut s = raw(&w);
    hello(&mut s);
    s.write_all(&frame(br#"{"type":"frobnicate"}"#)).unwrap();
    let r = read_frame(&mut s).unwrap();
    assert_eq!(r["type"], "error");
    assert!(r["message"].as_str().unwrap().contains("frobnicate"), "{r}");

    // Another protocol version.
    let mut s = raw(&w);
    s.write_all(&frame(br#"{"type":"hello","version":99}"#))
        .unwrap();
    let r = read_frame(&mut s).unwrap();
    assert_eq!(r["kind"], "version");
    assert!(
        r["message"].as_str().unwrap().contains("client speaks 99"),
        "{r}"
    );

    // Garbage without a frame at all, then close.
    let mut s = raw(&w);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    drop(s);

    // Still serving: the old connection and new ones.
    good.write_all(&frame(br#"{"type":"status"}"#)).unwrap();
    assert_eq!(read_frame(&mut good).unwrap()["type"], "status");
    assert_eq!(w.json(&["status", "--json"])["runs"], serde_json::json!([]));
}

#[test]
fn a_connection_from_another_uid_is_refused() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("not root: cannot switch to another uid here; CI runs as root and checks this");
        return;
    }
    let w = World::new();
    // Let another user reach the socket file, so the peer-credential check is what stops it.
    std::fs::create_dir_all(w.socket.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        w.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(w.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _d = w.daemon();
    std::fs::set_permissions(&w.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let py = r#"
import socket, struct, sys, json
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
b = json.dumps({"type": "hello", "version": 1}).encode()
s.sendall(struct.pack(">I", len(b)) + b)
n = struct.unpack(">I", s.recv(4))[0]
print(s.recv(n).decode())
"#;
    use std::os::unix::process::CommandExt;
    let o = std::process::Command::new("python3")
        .args(["-c", py, w.socket.to_str().unwrap()])
        .uid(65534)
        .gid(65534)
        .env_clear()
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("permission denied") && out.contains("uid 65534"),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The owner is still served.
    assert_eq!(w.json(&["status", "--json"])["runs"], serde_json::json!([]));
}

const SPEC: &str = r#"
goal = "faster"
[metric]
command = "python bench.py"
regex = 'mean: ([0-9.]+)'
direction = "lower"
[scope]
include = ["src/**"]
[proposer]
command = "claude -p"
"#;

#[test]
fn validate_prints_the_resolved_spec_and_rejects_bad_ones_with_locations() {
    let w = World::new();
    // `validate` checks the repository too: the spec sits in one.
    common::repo(w.path(), &[("src/etl/job.py", "print(1)\n")]);
    let p = w.path().join("etl-runtime.toml");
    write(&p, SPEC);
    let out = w.ok(&["validate", p.to_str().unwrap()]);
    assert!(
        out.contains("id = \"etl-runtime\"")
            && out.contains("timeout = \"2x\"")
            && out.contains("min_effect = \"1%\""),
        "{out}"
    );
    let v = w.json(&["validate", p.to_str().unwrap(), "--json"]);
    assert_eq!(v["id"], "etl-runtime");
    assert_eq!(v["spec"]["metric"]["repeats"], "auto");
    assert_eq!(v["spec"]["limits"]["measure"], "exclusive");
    assert_eq!(v["spec"]["policy"]["web_search"], "no");

    let cases: &[(&str, &str, &str)] = &[
        (
            "command = \"claude -p\"",
            "command = \"claude -p\"\nfrobnicate = 1",
            "unknown field `frobnicate`",
        ),
        ("direction = \"lower\"\n", "", "missing field `direction`"),
        ("src/**", "src/[", "invalid glob"),
        (
            "goal = \"faster\"",
            "goal = \"faster\"\n[budget]\nmax_wall = \"2x\"",
            "invalid duration \"2x\"",
        ),
        (
            "goal = \"faster\"",
            "goal = \"faster\"\n[limits]\nmemory = \"4 gigs\"",
            "invalid size \"4 gigs\"",
        ),
        (
            "goal = \"faster\"",
            "id = \"../x\"\ngoal = \"faster\"",
            "invalid run id \"../x\"",
        ),
        (
            "direction = \"lower\"",
            "direction = \"down\"",
            "unknown variant `down`",
        ),
    ];
    for (from, to, want) in cases {
        let bad = w.path().join("bad.toml");
        write(&bad, &SPEC.replacen(from, to, 1));
        let o = w.arctl(&["validate", bad.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{want}: {err}");
        assert!(err.contains(want), "{want}: {err}");
        // file:line:column
        let loc = format!("{}:", bad.display());
        let rest = err
            .split(&loc)
            .nth(1)
            .unwrap_or_else(|| panic!("{want}: no location in {err}"));
        let mut parts = rest.split(':');
        assert!(
            parts.next().unwrap().parse::<usize>().unwrap() >= 1,
            "{err}"
        );
        assert!(
            parts.next().unwrap().parse::<usize>().unwrap() >= 1,
            "{err}"
        );
        // start refuses the same spec with exit 2 (before any daemon is involved).
        let o = w.arctl(&["--no-autostart", "start", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "start {want}");
    }
    let o = w.arctl(&["validate", w.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the spec"));
    let o = w.arctl(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn every_example_spec_validates() {
    let w = World::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    // Each example in a repository of its own (`validate` checks the repository; arctl's
    // own checkout may be on a detached HEAD in CI).
    let proj = w.path().join("proj");
    common::repo(&proj, &[("README.md", "x\n")]);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map(|x| x == "toml").unwrap_or(false) {
            let copy = proj.join(p.file_name().unwrap());
            std::fs::copy(&p, &copy).unwrap();
            w.ok(&["validate", copy.to_str().unwrap()]);
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} examples");
    // The commented daemon config parses.
    let cfg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/daemon.toml");
    arctl::config::Settings::load(&cfg).unwrap();
}

#[test]
fn completions_are_printed() {
    let w = World::new();
    for shell in ["bash", "zsh", "fish"] {
        // The script calls back into arctl (tests/cli_e2e.rs checks what it completes).
        let out = w.ok(&["completions", shell]);
        assert!(
            out.contains("arctl") && out.contains("COMPLETE="),
            "{shell}: {out}"
        );
    }
}
