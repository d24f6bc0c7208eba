//! Tests with real processes. Every path is in a tempdir; conditions are polled with
//! deadlines. Tags are unique per test (pid + name) so parallel tests never touch each
//! other's processes.

use super::*;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;
use tempfile::TempDir;

const MIB: u64 = 1024 * 1024;

fn unique_tag(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    // The counter comes before the name so that no tag is a prefix of another.
    format!(
        "arctl-test-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        name
    )
}

fn spec(dir: &TempDir, name: &str, command: &str) -> CommandSpec {
    CommandSpec::new(
        command,
        dir.path(),
        dir.path().join(format!("{name}.out")),
        dir.path().join(format!("{name}.err")),
        unique_tag(name),
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn go(s: &CommandSpec) -> Outcome {
    run(s, &Cancel::new()).unwrap_or_else(|e| panic!("run {:?}: {e}", s.command))
}

fn is_live(pid: u32) -> bool {
    procfs::read_stat(pid).is_some_and(|s| !s.is_dead())
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn python() -> bool {
    std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn exit_codes_and_descriptions() {
    let dir = TempDir::new().unwrap();
    let o = go(&spec(&dir, "ok", "exit 0"));
    assert_eq!(o.exit, Exit::Code { code: 0 });
    assert!(o.exit.success());
    let o = go(&spec(&dir, "three", "exit 3"));
    assert_eq!(o.exit, Exit::Code { code: 3 });
    assert!(!o.exit.success());
    assert_eq!(o.exit.describe(), "exit 3");
    let o = go(&spec(&dir, "segv", "kill -SEGV $$"));
    assert_eq!(
        o.exit,
        Exit::Signal {
            signal: libc::SIGSEGV
        }
    );
    assert_eq!(o.exit.describe(), "killed by SIGSEGV");
    assert!(o.pid > 0 && o.pid_start_time > 0);
    // Reaped: the pid is no longer a child (zombie or not) of ours.
    let me = std::process::id();
    assert!(procfs::read_stat(o.pid).is_none_or(|s| s.ppid != me));
    assert!(o.ended_at_ms >= o.started_at_ms);
    assert_eq!(Exit::TimedOut.describe(), "timed out");
    assert_eq!(Exit::MemoryLimit.describe(), "memory limit exceeded");
    assert_eq!(Exit::CpuLimit.describe(), "cpu time limit exceeded");
    assert_eq!(Exit::Cancelled.describe(), "cancelled");
    assert_eq!(
        serde_json::to_string(&Exit::Code { code: 1 }).unwrap(),
        r#"{"kind":"code","code":1}"#
    );
    assert_eq!(
        serde_json::from_str::<Exit>(r#"{"kind":"memory_limit"}"#).unwrap(),
        Exit::MemoryLimit
    );
}

#[test]
fn captures_output_env_and_cwd() {
    let dir = TempDir::new().unwrap();
    let sub = dir.path().join("work dir");
    std::fs::create_dir(&sub).unwrap();
    let mut s = spec(
        &dir,
        "io",
        "echo out; echo err >&2; echo \"$FOO\"; echo \"$ARCTL_TAG\"; pwd",
    );
    s.cwd = sub.clone();
    s.env = vec![("FOO".into(), "bar baz".into())];
    s.stdout = dir.path().join("logs/nested/io.out"); // parent dirs are created
    let o = go(&s);
    assert!(o.exit.success());
    assert_eq!(
        read(&s.stdout),
        format!("out\nbar baz\n{}\n{}\n", s.tag, sub.display())
    );
    assert_eq!(read(&s.stderr), "err\n");

    // Truncated on reuse; one shared file when both paths are equal.
    let mut s2 = spec(&dir, "same", "echo a; echo b >&2; echo c");
    s2.stderr = s2.stdout.clone();
    std::fs::write(&s2.stdout, "old content that is long\n").unwrap();
    assert!(go(&s2).exit.success());
    assert_eq!(read(&s2.stdout), "a\nb\nc\n");
}

/// The daemon's fds (the stat walk's handles among them: thousands, high and low) reach
/// neither the command nor its keeper, inheritable or not.
#[test]
fn the_command_and_its_keeper_hold_only_their_own_fds() {
    let dir = TempDir::new().unwrap();
    let file = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    let mut ours = Vec::new();
    for i in 0..40 {
        // SAFETY: opening our temp dir; half of them inheritable, some at high numbers.
        let fd = unsafe {
            let flags = libc::O_PATH | if i % 2 == 0 { libc::O_CLOEXEC } else { 0 };
            let fd = libc::open(file.as_ptr(), flags);
            if i % 4 == 0 {
                let high = libc::fcntl(fd, libc::F_DUPFD, 900 + i);
                libc::close(fd);
                high
            } else {
                fd
            }
        };
        assert!(fd >= 0);
        ours.push(fd);
    }
    let s = spec(
        &dir,
        "fds",
        "ls /proc/self/fd; echo keeper; ls /proc/$PPID/fd",
    );
    let o = go(&s);
    for fd in ours {
        // SAFETY: closing what we opened above.
        unsafe { libc::close(fd) };
    }
    assert!(o.exit.success(), "{}", read(&s.stderr));
    let out = read(&s.stdout);
    let (command, keeper) = out.split_once("keeper\n").unwrap();
    let numbers = |s: &str| -> Vec<i32> { s.lines().map(|l| l.parse().unwrap()).collect() };
    // `ls` has one more open: the folder it lists.
    assert!(numbers(command).iter().all(|fd| *fd <= 3), "{out}");
    // The keeper: stdio and the status pipe.
    assert!(numbers(keeper).iter().all(|fd| *fd <= 3), "{out}");
}

#[test]
fn stdin_is_delivered_or_null() {
    let dir = TempDir::new().unwrap();
    let mut s = spec(&dir, "cat", "cat");
    s.stdin = Some(b"hello\nworld\n".to_vec());
    assert!(go(&s).exit.success());
    assert_eq!(read(&s.stdout), "hello\nworld\n");

    // Larger than any pipe buffer.
    let mut s = spec(&dir, "wc", "wc -c");
    s.stdin = Some(vec![b'x'; 10 * MIB as usize]);
    assert!(go(&s).exit.success());
    assert_eq!(read(&s.stdout).trim(), (10 * MIB).to_string());

    // None = /dev/null: reading gives EOF at once.
    let s = spec(&dir, "null", "cat; echo done");
    assert!(go(&s).exit.success());
    assert_eq!(read(&s.stdout), "done\n");
}

#[test]
fn child_ignoring_big_stdin_does_not_deadlock() {
    let dir = TempDir::new().unwrap();
    let mut s = spec(&dir, "ignore", "sleep 0.2; echo done");
    s.stdin = Some(vec![b'y'; 8 * MIB as usize]);
    let t = Instant::now();
    let o = go(&s);
    assert!(o.exit.success());
    assert_eq!(read(&s.stdout), "done\n");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn timeout_kills_quickly() {
    let dir = TempDir::new().unwrap();
    let mut s = spec(&dir, "sleep", "sleep 1000");
    s.timeout = Some(Duration::from_millis(300));
    let t = Instant::now();
    let o = go(&s);
    assert_eq!(o.exit, Exit::TimedOut);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(o.wall_ms >= 300);
    assert!(tagged_processes(&s.tag).is_empty());
}

#[test]
fn timeout_escalates_to_sigkill_after_grace() {
    let dir = TempDir::new().unwrap();
    // The shell and the sleep both ignore SIGTERM.
    let mut s = spec(
        &dir,
        "stubborn",
        "trap '' TERM; sleep 1000; echo not reached",
    );
    s.timeout = Some(Duration::from_millis(200));
    let t = Instant::now();
    let o = go(&s);
    assert_eq!(o.exit, Exit::TimedOut);
    let took = t.elapsed();
    assert!(
        took >= TERM_GRACE,
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(took < TERM_GRACE + Duration::from_secs(4), "took {took:?}");
    assert!(tagged_processes(&s.tag).is_empty());
}

#[test]
fn escaped_descendants_are_killed() {
    let dir = TempDir::new().unwrap();
    // 1: new session; 2: double fork (orphaned, reparented away from the tree) in a new
    // session; 3: stays in the group but drops the tag; 4: plain background job.
    let script = r#"
setsid sh -c 'echo $$ > p1; exec sleep 1000' &
( setsid sh -c '( sh -c "echo \$\$ > p2; exec sleep 1000" & )' & )
env -u ARCTL_TAG sh -c 'echo $$ > p3; exec sleep 1000' &
sh -c 'echo $$ > p4; exec sleep 1000' &
i=0
while [ ! -s p1 ] || [ ! -s p2 ] || [ ! -s p3 ] || [ ! -s p4 ]; do
  sleep 0.01; i=$((i+1)); [ $i -gt 1000 ] && exit 9
done
echo started
"#;
    let s = spec(&dir, "escape", script);
    let t = Instant::now();
    let o = go(&s);
    assert_eq!(
        o.exit,
        Exit::Code { code: 0 },
        "stderr: {}",
        read(&s.stderr)
    );
    assert_eq!(read(&s.stdout), "started\n");
    assert!(tagged_processes(&s.tag).is_empty());
    for f in ["p1", "p2", "p3", "p4"] {
        let pid: u32 = read(&dir.path().join(f)).trim().parse().unwrap();
        assert!(!is_live(pid), "{f} (pid {pid}) survived");
    }
    // The sleeps die on SIGTERM: no SIGKILL grace needed.
    assert!(
        t.elapsed() < TERM_GRACE + Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn escaped_descendants_are_killed_on_timeout() {
    let dir = TempDir::new().unwrap();
    let mut s = spec(
        &dir,
        "escape-timeout",
        "setsid sh -c 'echo $$ > q; exec sleep 1000' & sleep 1000",
    );
    s.timeout = Some(Duration::from_millis(500));
    let o = go(&s);
    assert_eq!(o.exit, Exit::TimedOut);
    assert!(tagged_processes(&s.tag).is_empty());
    let pid: u32 = read(&dir.path().join("q")).trim().parse().unwrap();
    assert!(!is_live(pid));
}

#[test]
fn memory_limit_watchdog() {
    if !python() {
        eprintln!("python3 not available; skipped");
        return;
    }
    let dir = TempDir::new().unwrap();
    let cases = [
        (
            "mem600",
            "b=bytearray(600*1024*1024); import time; time.sleep(5)",
        ),
        (
            "mem2g",
            "b=bytearray(2*1024*1024*1024); import time; time.sleep(5)",
        ),
    ];
    for (name, code) in cases {
        let mut s = spec(&dir, name, &format!("python3 -c \"{code}\""));
        s.limits.memory = Some(200 * MIB);
        let t = Instant::now();
        let o = go(&s);
        assert_eq!(
            o.exit,
            Exit::MemoryLimit,
            "{name}: stderr {}",
            read(&s.stderr)
        );
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{name} took {:?}",
            t.elapsed()
        );
        assert!(o.peak_rss > 200 * MIB, "{name}: peak {}", o.peak_rss);
    }
}

#[test]
fn memory_limit_counts_the_whole_tree() {
    if !python() {
        return;
    }
    let dir = TempDir::new().unwrap();
    // Two processes of ~150 MiB each: each under the 200 MiB limit, together over it.
    let one = "python3 -c \"b=bytearray(150*1024*1024); import time; time.sleep(10)\"";
    let mut s = spec(&dir, "memtree", &format!("{one} & {one} & wait"));
    s.limits.memory = Some(200 * MIB);
    let t = Instant::now();
    let o = go(&s);
    assert_eq!(o.exit, Exit::MemoryLimit);
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t.elapsed()
    );
    assert!(tagged_processes(&s.tag).is_empty());
}

#[test]
fn memory_limit_backstop_allocation_failure() {
    if !python() || limit_mechanism() != LimitMechanism::RlimitWatchdog {
        return;
    }
    let dir = TempDir::new().unwrap();
    // Past the RLIMIT_DATA backstop (200 MiB + 4 GiB) the allocation itself fails.
    let mut s = spec(
        &dir,
        "memhuge",
        "python3 -c \"b=bytearray(8*1024*1024*1024)\"",
    );
    s.limits.memory = Some(200 * MIB);
    let o = go(&s);
    assert_eq!(o.exit, Exit::MemoryLimit, "stderr {}", read(&s.stderr));
    assert!(read(&s.stderr).contains("MemoryError"));
}

#[test]
fn memory_under_limit_is_fine() {
    if !python() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut s = spec(
        &dir,
        "memok",
        "python3 -c \"b=bytearray(50*1024*1024); print(len(b))\"",
    );
    s.limits.memory = Some(200 * MIB);
    let o = go(&s);
    assert_eq!(o.exit, Exit::Code { code: 0 }, "stderr {}", read(&s.stderr));
    assert!(o.peak_rss >= 50 * MIB, "peak {}", o.peak_rss);
    assert!(o.peak_rss < 200 * MIB, "peak {}", o.peak_rss);
}

#[test]
fn cpu_time_limit() {
    let dir = TempDir::new().unwrap();
    let mut s = spec(&dir, "busy", "while :; do :; done");
    s.limits.cpu_time = Some(Duration::from_secs(1));
    s.timeout = Some(Duration::from_secs(30));
    let t = Instant::now();
    let o = go(&s);
    assert_eq!(o.exit, Exit::CpuLimit);
    // rusage is tick-sampled: on a loaded VM it can read well under the precise runtime
    // that RLIMIT_CPU enforces, so only a loose floor here.
    assert!(o.cpu_ms >= 500, "cpu_ms {}", o.cpu_ms);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn cpu_time_limit_counts_the_whole_tree() {
    let dir = TempDir::new().unwrap();
    // Three busy processes; RLIMIT_CPU (2 s each) alone would let them use 6 s in all.
    let mut s = spec(
        &dir,
        "busytree",
        "sh -c 'while :; do :; done' & sh -c 'while :; do :; done' & sh -c 'while :; do :; done' & wait",
    );
    s.limits.cpu_time = Some(Duration::from_millis(1500));
    s.timeout = Some(Duration::from_secs(30));
    let o = go(&s);
    assert_eq!(o.exit, Exit::CpuLimit);
    // The shells were killed before anyone waited for them: cpu_ms comes from the samples.
    assert!(o.cpu_ms >= 1400, "cpu_ms {}", o.cpu_ms);
    assert!(tagged_processes(&s.tag).is_empty());
}

#[test]
fn cpus_pinning_is_visible_in_the_child() {
    let dir = TempDir::new().unwrap();
    let cpus = available_cpus();
    assert!(!cpus.is_empty());
    let core = *cpus.last().unwrap();
    let mut s = spec(&dir, "pin", "grep Cpus_allowed_list /proc/self/status");
    s.limits.cpus = Some(vec![core]);
    assert!(go(&s).exit.success());
    assert_eq!(
        read(&s.stdout).trim(),
        format!("Cpus_allowed_list:\t{core}")
    );

    // A core we may not use: a spawn error naming the cause, output files still created.
    let mut s = spec(&dir, "badpin", "true");
    s.limits.cpus = Some(vec![1000]);
    let e = run(&s, &Cancel::new()).unwrap_err();
    assert!(e.to_string().contains("sched_setaffinity"), "{e}");
    assert!(s.stdout.exists() && s.stderr.exists());
}

#[test]
fn cpu_and_rss_are_plausible() {
    if !python() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let code = "import time\nb=bytearray(80*1024*1024)\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass";
    let s = spec(&dir, "plausible", &format!("python3 -c '{code}'"));
    let o = go(&s);
    assert!(o.exit.success(), "stderr {}", read(&s.stderr));
    // Loose floor: rusage is tick-sampled (see cpu_time_limit).
    assert!(o.cpu_ms >= 300 && o.cpu_ms < 5000, "cpu_ms {}", o.cpu_ms);
    assert!(
        o.peak_rss >= 80 * MIB && o.peak_rss < 400 * MIB,
        "peak {}",
        o.peak_rss
    );
    assert!(o.wall_ms >= 550, "wall {}", o.wall_ms);

    let o = go(&spec(&dir, "tiny", "true"));
    assert!(
        o.peak_rss > 0 && o.peak_rss < 64 * MIB,
        "peak {}",
        o.peak_rss
    );
    assert!(o.cpu_ms < 500);
}

#[test]
fn cancel_stops_the_command() {
    let dir = TempDir::new().unwrap();
    let s = spec(&dir, "cancel", "touch started; sleep 1000");
    let cancel = Cancel::new();
    let flag = cancel.clone();
    let marker = dir.path().join("started");
    let t = Instant::now();
    let o = std::thread::scope(|scope| {
        scope.spawn(|| {
            wait_for("the command to start", Duration::from_secs(10), || {
                marker.exists()
            });
            flag.cancel();
        });
        run(&s, &cancel).unwrap()
    });
    assert_eq!(o.exit, Exit::Cancelled);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    assert!(tagged_processes(&s.tag).is_empty());

    // Cancelled before it starts: ends at once.
    let s = spec(&dir, "precancel", "sleep 1000");
    let c = Cancel::new();
    c.cancel();
    assert!(c.is_cancelled());
    assert_eq!(run(&s, &c).unwrap().exit, Exit::Cancelled);
}

#[test]
fn instructions() {
    let dir = TempDir::new().unwrap();
    let mut s = spec(
        &dir,
        "instr",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
    );
    s.count_instructions = true;
    match instructions_supported() {
        Ok(()) => {
            let o = go(&s);
            assert!(o.exit.success());
            let n = o.instructions.expect("a count");
            assert!(n > 1_000_000 && n < 100_000_000_000, "instructions {n}");
        }
        Err(why) => {
            eprintln!("instruction counting unsupported here: {why}");
            assert!(why.starts_with("perf_event_open: E"), "{why}");
            assert!(why.contains('('), "no reason given: {why}");
            let e = run(&s, &Cancel::new()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
            assert!(e.to_string().contains("perf_event_open"), "{e}");
            assert!(s.stdout.exists() && s.stderr.exists());
        }
    }
}

#[test]
fn spawn_failures_are_errors_with_context() {
    let dir = TempDir::new().unwrap();
    let mut s = spec(&dir, "nocwd", "true");
    s.cwd = dir.path().join("does-not-exist");
    let e = run(&s, &Cancel::new()).unwrap_err();
    assert!(e.to_string().contains("chdir"), "{e}");
    assert!(e.to_string().contains("does-not-exist"), "{e}");
    assert!(s.stdout.exists() && s.stderr.exists());

    let s = spec(&dir, "nul", "echo \0");
    assert_eq!(
        run(&s, &Cancel::new()).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );

    let mut s = spec(&dir, "badenv", "true");
    s.env = vec![("A=B".into(), "x".into())];
    assert_eq!(
        run(&s, &Cancel::new()).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );

    // Command not found is a normal exit (127 from the shell), not a spawn error.
    let o = go(&spec(&dir, "nocmd", "definitely-not-a-command-arctl"));
    assert_eq!(o.exit, Exit::Code { code: 127 });
}

#[test]
fn background_job_does_not_outlive_normal_exit() {
    let dir = TempDir::new().unwrap();
    let s = spec(&dir, "daemonish", "sleep 1000 & echo $! > bg; exit 0");
    let o = go(&s);
    assert!(o.exit.success());
    let pid: u32 = read(&dir.path().join("bg")).trim().parse().unwrap();
    assert!(!is_live(pid));
    assert!(tagged_processes(&s.tag).is_empty());
}

#[test]
fn kill_tagged_and_tagged_processes() {
    let prefix = unique_tag("direct");
    let mut children: Vec<std::process::Child> = (0..2)
        .map(|i| {
            std::process::Command::new("sleep")
                .arg("1000")
                .env(TAG_VAR, format!("{prefix}-{i}"))
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    wait_for(
        "tagged processes to be visible",
        Duration::from_secs(5),
        || {
            let mut found = tagged_processes(&prefix);
            found.sort();
            let mut want = pids.clone();
            want.sort();
            found == want
        },
    );
    assert!(tagged_processes(&format!("{prefix}-1")) == vec![pids[1]]);
    assert_eq!(kill_tagged(&prefix), 2);
    for c in &mut children {
        let status = c.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
    assert!(tagged_processes(&prefix).is_empty());
    assert_eq!(kill_tagged(&prefix), 0);
}

#[test]
fn available_cpus_and_start_time() {
    let cpus = available_cpus();
    assert!(!cpus.is_empty());
    assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    assert!(process_start_time(std::process::id()).is_some());
    assert!(process_start_time(u32::MAX - 1).is_none());
}

#[test]
fn a_limit_hit_below_the_top_is_a_limit_even_when_the_top_exits_0() {
    let dir = TempDir::new().unwrap();
    // The busy child dies of RLIMIT_CPU; its parent prints a number and exits 0.
    let mut s = spec(&dir, "busychild", "sh -c 'while :; do :; done'; echo 5");
    s.limits.cpu_time = Some(Duration::from_secs(1));
    s.timeout = Some(Duration::from_secs(30));
    let o = go(&s);
    assert_eq!(o.exit, Exit::CpuLimit, "cpu_ms {}", o.cpu_ms);
}
