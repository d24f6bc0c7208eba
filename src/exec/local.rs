//! [`run`], a command on this machine, as the phases it goes through: **prepare** (output
//! files, environment, limits, cgroup: what can fail before a process exists), **spawn**
//! (the fork held at its gate while the counter is attached and it joins its cgroup),
//! **wait** (the `waitid` loop: timeout, cancel, the watchdog's samples), **sweep** (what
//! is left of the tree) and the **outcome** (reap, classify). The module `exec` keeps the
//! types and the documentation of the whole mechanism.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::cgroup::CommandCgroup;
use super::classify::classify;
use super::contain::{self, Sandbox};
use super::exit_wait::ExitWaiter;
use super::feeder::Feeder;
use super::procfs::{self, Ident, TagMatch, TreeTracker};
use super::running;
use super::sink::Sinks;
use super::{
    epoch_ms, instructions_supported, limit_mechanism, process_start_time, spawn, Cancel,
    CommandSpec, Exit, LimitMechanism, Limits, Outcome, DEFAULT_OUTPUT_CAP, MIN_DATA_HEADROOM,
    TAG_VAR, TERM_GRACE,
};

/// How often the tree is sampled when a memory or CPU limit is being enforced.
const SAMPLE_LIMITED: Duration = Duration::from_millis(50);
/// How often the tree is sampled otherwise (for peak RSS).
const SAMPLE_PLAIN: Duration = Duration::from_millis(100);
/// How far above the CPU-time limit the per-process RLIMIT_CPU backstop sits.
const CPU_BACKSTOP_MARGIN: Duration = Duration::from_secs(2);
/// Longest sleep of the wait loop.
const MAX_NAP: Duration = Duration::from_millis(20);

/// Run a command to completion (blocking). See the module documentation.
///
/// Errors: the output files cannot be created, the spec is invalid (NUL bytes, bad env
/// name, empty cpu list), instruction counting was asked for but is unsupported, or the
/// child could not be started (fork, chdir, exec, pinning...). The output files exist in
/// every case.
pub fn run(spec: &CommandSpec, cancel: &Cancel) -> io::Result<Outcome> {
    run_sandboxed(spec, &Sandbox::default(), cancel)
}

/// [`run`] inside `sandbox`: Landlock rules for its writes, a PID namespace, no network
/// (see [`Sandbox`]). Errors as [`run`]'s, and the sandbox cannot be set up.
pub fn run_sandboxed(
    spec: &CommandSpec,
    sandbox: &Sandbox,
    cancel: &Cancel,
) -> io::Result<Outcome> {
    let what = || {
        format!(
            "running `{}` in {}",
            short(&spec.command),
            spec.cwd.display()
        )
    };
    let mut prepared = prepare(spec, sandbox, &what)?;
    let sinks = prepared.sinks.take();
    // Frozen from just before the fork to after the sweep; whatever turn or lock a sandbox
    // needed is held by now, so no frozen command holds something this one waits for.
    let freeze = spec.exclusive.then(|| {
        let scope = format!("{}/", spec.tag.split('/').next().unwrap_or(&spec.tag));
        running::freeze_others(&scope, &spec.tag)
    });
    let result = spawn_child(spec, prepared, &what).and_then(|mut child| {
        let (exited_at, mut watch) = wait(spec, cancel, &mut child, &what)?;
        let ended_at_ms = epoch_ms();
        sweep(&child, &mut watch);
        // Out of the registry before the leader is reaped (its group id is then free).
        let frozen = watch.registration.finish();
        Ok((child, watch, exited_at, ended_at_ms, frozen))
    });
    // Every writer of the pipes is gone now (or never started): the files are complete.
    finish_outputs(sinks, &what);
    let froze = freeze.map(|f| f.stopped);
    let (child, watch, exited_at, ended_at_ms, frozen) = result?;
    let mut o = outcome(spec, child, watch, exited_at, ended_at_ms)?;
    o.frozen_ms = (!frozen.is_zero()).then_some(frozen.as_millis() as u64);
    o.froze = froze;
    Ok(o)
}

/// What is set up before the fork: everything that can fail while no process exists yet.
struct Prepared {
    out: OwnedFd,
    err: OwnedFd,
    /// Copy the child's output into its files (see [`Sinks`]).
    sinks: Option<Sinks>,
    /// None: the rlimits + watchdog path.
    cgroup: Option<CommandCgroup>,
    /// The RLIMIT_DATA backstop, set on the rlimit path when memory is limited.
    data_limit: Option<u64>,
    exec: spawn::Prepared,
}

/// Phase 1: the output files (first, so they exist whatever fails next), the counter check,
/// the limits (cgroup or rlimits) and the child's argv and environment.
fn prepare(
    spec: &CommandSpec,
    sandbox: &Sandbox,
    what: &dyn Fn() -> String,
) -> io::Result<Prepared> {
    let (out, err, sinks) = open_outputs(spec)?;
    if spec.count_instructions {
        instructions_supported().map_err(counting_unsupported)?;
    }
    let limits = &spec.limits;
    let cgroup = command_cgroup(spec);
    let data_limit = match (&cgroup, limits.memory) {
        (None, Some(m)) => Some(m.saturating_add(m.max(MIN_DATA_HEADROOM))),
        _ => None,
    };
    // RLIMIT_CPU is only a backstop, above the limit: the watchdog, which sums the whole
    // tree, stops it first, so a child over the limit makes the command's outcome the
    // limit even when its parent carries on and exits 0.
    let cpu_secs = limits.cpu_time.map(|d| {
        let backstop = d + (d / 10).max(CPU_BACKSTOP_MARGIN);
        backstop.as_secs() + u64::from(backstop.subsec_nanos() > 0)
    });
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter(|(k, _)| k != TAG_VAR)
        .cloned()
        .collect();
    env.push((TAG_VAR.to_string(), spec.tag.clone()));
    let mut exec = spawn::Prepared::new(
        &spec.command,
        &spec.cwd,
        &env,
        cpu_secs,
        data_limit,
        limits.cpus.as_deref(),
    )
    .map_err(|e| with_context(e, what()))?;
    contain(&mut exec, spec, sandbox).map_err(|e| with_context(e, what()))?;
    Ok(Prepared {
        out,
        err,
        sinks: Some(sinks),
        cgroup,
        data_limit,
        exec,
    })
}

/// The keeper's namespaces and the command's Landlock ruleset (its output files writable).
fn contain(exec: &mut spawn::Prepared, spec: &CommandSpec, sandbox: &Sandbox) -> io::Result<()> {
    let flags = contain::clone_flags(sandbox)?;
    let ruleset = match &sandbox.writable {
        Some(dirs) => {
            let files = [spec.stdout.clone(), spec.stderr.clone()];
            super::landlock::ruleset(dirs, &files)?
        }
        None => None,
    };
    exec.contain(flags, ruleset);
    Ok(())
}

fn counting_unsupported(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("counting instructions: {why}"),
    )
}

/// Limits: a cgroup if v2 is detected and accepts them, else None (rlimits + watchdog).
fn command_cgroup(spec: &CommandSpec) -> Option<CommandCgroup> {
    match limit_mechanism() {
        LimitMechanism::CgroupV2 { path } => {
            match CommandCgroup::create(&path, &spec.tag, &spec.limits) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    tracing::warn!(
                        "cgroup v2 limits not applied for {:?} ({e}); using rlimits + watchdog",
                        spec.tag
                    );
                    None
                }
            }
        }
        LimitMechanism::RlimitWatchdog => None,
    }
}

/// A started child and what is attached to it. Fields drop in this order, which matters on
/// an early return: the stdin thread stops, the reaper kills and reaps a child still there,
/// and only then does its cgroup go.
struct Child<'a> {
    /// The keeper's pid: the root of the tree.
    pid: u32,
    pid_start_time: u64,
    /// The keeper is the init of a PID namespace: its death kills the tree.
    pid_ns: bool,
    /// Read end of the status pipe (the command's wait status, from the keeper).
    status: OwnedFd,
    started: Instant,
    started_at_ms: u64,
    feeder: Option<Feeder>,
    counter: Option<crate::host::perf::Counter>,
    /// In the daemon-wide registry from before the gate opened (a command started during a
    /// freeze is stopped before it runs); handed to the watch. Dropped before the reaper.
    registration: Option<running::Registration>,
    reaper: Reaper<'a>,
    cgroup: Option<CommandCgroup>,
    /// The memory limit is enforced by sampling the tree's RSS (no cgroup to do it).
    rss_watchdog: bool,
    data_limit: Option<u64>,
}

/// Phase 2: fork (the child waits at the gate before `execve`), attach the instruction
/// counter and move it into its cgroup while it waits, then let it go and feed its stdin.
fn spawn_child<'a>(
    spec: &'a CommandSpec,
    prepared: Prepared,
    what: &dyn Fn() -> String,
) -> io::Result<Child<'a>> {
    let Prepared {
        out,
        err,
        sinks: _,
        mut cgroup,
        data_limit,
        exec,
    } = prepared;
    let (stdin_child, stdin_parent) = stdin_fds(spec)?;
    let (gate_child, gate_parent) = spawn::gate_pair()?;
    let (err_read, err_write) = spawn::pipe()?;
    let (status_read, status_write) = spawn::pipe()?;
    spawn::set_nonblocking(&status_read)?;
    let pid = spawn::fork_keeper(
        &exec,
        &spawn::ChildFds {
            stdin: &stdin_child,
            stdout: &out,
            stderr: &err,
            gate: &gate_child,
            err: &err_write,
            status: &status_write,
        },
        &gate_parent,
    )
    .map_err(|e| with_context(e, format_args!("{}: fork", what())))?;
    let pid_start_time = process_start_time(pid).unwrap_or(0);
    // Known before its gate opens: its command cannot act before it is.
    let registration = running::register(&spec.tag, (pid, pid_start_time));
    let reaper = Reaper {
        pid,
        tag: &spec.tag,
        reaped: false,
    };
    drop((gate_child, err_write, status_write, stdin_child, out, err));
    // Also set the group from this side, so it exists whatever the child's progress.
    // SAFETY: setpgid on our own child; failure (already exec'd) is harmless.
    unsafe { libc::setpgid(pid as libc::pid_t, pid as libc::pid_t) };
    let counter = if spec.count_instructions {
        Some(crate::host::perf::Counter::attach(pid).map_err(counting_unsupported)?)
    } else {
        None
    };
    let memory = spec.limits.memory.is_some();
    let mut rss_watchdog = cgroup.is_none() && memory;
    if let Some(cg) = &cgroup {
        if let Err(e) = cg.add(pid) {
            tracing::warn!(
                "cannot move {pid} into {} ({e}); using the RSS watchdog",
                cg.path().display()
            );
            cgroup = None;
            rss_watchdog = memory;
        }
    }
    // Held at its gate during another command's exclusive measurement; freezable only once
    // past it (see `running::wait_unfrozen`).
    running::wait_unfrozen(&spec.tag);
    spawn::open_gate(gate_parent, err_read).map_err(|e| with_context(e, what()))?;
    registration.started();
    let started = Instant::now();
    let started_at_ms = epoch_ms();
    let feeder = match (stdin_parent, &spec.stdin) {
        (Some(fd), Some(data)) => Some(Feeder::start(fd, data.clone())?),
        _ => None,
    };
    Ok(Child {
        pid,
        pid_start_time,
        pid_ns: exec.pid_namespace(),
        status: status_read,
        started,
        started_at_ms,
        feeder,
        counter,
        registration: Some(registration),
        reaper,
        cgroup,
        rss_watchdog,
        data_limit,
    })
}

/// The child's stdin (/dev/null, or the read end of a pipe) and the end we write to.
fn stdin_fds(spec: &CommandSpec) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    match &spec.stdin {
        None => {
            let null = std::fs::File::open("/dev/null")?;
            Ok((spawn::above_stdio(null.into())?, None))
        }
        Some(_) => {
            let (r, w) = spawn::pipe()?;
            spawn::set_nonblocking(&w)?;
            Ok((r, Some(w)))
        }
    }
}

/// What the wait loop knows of the tree, and the stop it is carrying out.
struct Watch {
    tracker: TreeTracker,
    sample_every: Duration,
    timeout_at: Option<Instant>,
    next_sample: Instant,
    /// Max over samples of the summed RSS of the tree.
    peak: u64,
    /// Max over samples of the tree's CPU time.
    tree_cpu: Duration,
    /// Why arctl stopped the command, if it did.
    reason: Option<Exit>,
    /// SIGKILL due (after SIGTERM + grace).
    kill_at: Option<Instant>,
    killed: bool,
    /// Tree members at the last sample.
    members: Vec<Ident>,
    nap: Duration,
    /// The command's wait status, reported by the keeper.
    command_status: Option<i32>,
    /// The command's place in the daemon-wide registry: a measurement elsewhere may freeze
    /// it (its frozen time does not count toward the timeout); fed by `sample`.
    registration: running::Registration,
    /// Naps end the moment the child exits (precise wall times).
    exit: ExitWaiter,
}

/// Phase 3: wait for the child to exit, watching the clock, the cancel flag and the tree.
/// Returns when it exited; it is left an unreaped zombie (see `exited_nowait`).
fn wait(
    spec: &CommandSpec,
    cancel: &Cancel,
    c: &mut Child,
    what: &dyn Fn() -> String,
) -> io::Result<(Instant, Watch)> {
    let mut w = Watch::new(spec, c);
    loop {
        if let Some(st) = command_status(&c.status) {
            w.command_status = Some(st);
            return Ok((Instant::now(), w));
        }
        match exited_nowait(c.pid) {
            Ok(true) => return Ok((Instant::now(), w)),
            Ok(false) => {}
            Err(e) => return Err(lost_child(c, e, what)),
        }
        let now = Instant::now();
        if w.reason.is_none() {
            w.stop_if_asked(now, cancel, c.pid);
        }
        if !w.killed && w.kill_at.is_some_and(|t| now >= t) {
            kill_tree(c, &w.members);
            w.killed = true;
        }
        if now >= w.next_sample {
            w.sample(now, c, &spec.limits);
        }
        w.nap(now);
    }
}

/// Someone else reaped our child (SIGCHLD ignored, or a waitpid(-1)): kill what is left of
/// the tree, stop feeding it, and say so.
fn lost_child(c: &mut Child, e: io::Error, what: &dyn Fn() -> String) -> io::Error {
    c.reaper.reaped = true;
    procfs::signal_group(c.pid, libc::SIGKILL);
    procfs::kill_matching(TagMatch::Exact(c.reaper.tag), Duration::ZERO);
    if let Some(f) = c.feeder.take() {
        f.finish();
    }
    with_context(e, format_args!("{}: waiting for pid {}", what(), c.pid))
}

impl Watch {
    fn new(spec: &CommandSpec, c: &mut Child) -> Watch {
        let limits = &spec.limits;
        Watch {
            // In a PID namespace nothing leaves the keeper's tree: no environment scan.
            tracker: TreeTracker::new(c.pid, &spec.tag, !c.pid_ns),
            sample_every: if limits.memory.is_some() || limits.cpu_time.is_some() {
                SAMPLE_LIMITED
            } else {
                SAMPLE_PLAIN
            },
            timeout_at: spec.timeout.map(|t| c.started + t),
            next_sample: c.started,
            peak: 0,
            tree_cpu: Duration::ZERO,
            reason: None,
            kill_at: None,
            killed: false,
            members: Vec::new(),
            nap: Duration::from_millis(1),
            command_status: None,
            registration: c
                .registration
                .take()
                .unwrap_or_else(|| running::register(&spec.tag, (c.pid, c.pid_start_time))),
            exit: ExitWaiter::open(c.pid),
        }
    }

    /// Cancel or timeout: SIGTERM to the tree now, SIGKILL after [`TERM_GRACE`].
    fn stop_if_asked(&mut self, now: Instant, cancel: &Cancel, pid: u32) {
        let stop = if cancel.is_cancelled() {
            Exit::Cancelled
        } else if self
            .timeout_at
            .is_some_and(|t| now >= t + self.registration.frozen_for())
        {
            Exit::TimedOut
        } else {
            return;
        };
        self.reason = Some(stop);
        procfs::signal_group(pid, libc::SIGTERM);
        for &m in &self.members {
            procfs::signal_ident(m, libc::SIGTERM);
        }
        procfs::signal_group(pid, libc::SIGCONT);
        self.kill_at = Some(now + TERM_GRACE);
    }

    /// Sample the tree (peak RSS, CPU time, members); past a limit, kill it at once.
    fn sample(&mut self, now: Instant, c: &Child, limits: &Limits) {
        let s = self.tracker.sample(false, &cgroup_procs(&c.cgroup));
        self.peak = self.peak.max(s.rss_bytes);
        self.members = s
            .members
            .iter()
            .filter(|m| !m.is_dead())
            .map(|m| m.ident())
            .collect();
        self.registration.update(&self.members);
        let cpu = c
            .cgroup
            .as_ref()
            .and_then(|cg| cg.cpu_usage())
            .unwrap_or(s.cpu);
        self.tree_cpu = self.tree_cpu.max(cpu);
        if self.reason.is_none() {
            let over_memory = c.rss_watchdog && limits.memory.is_some_and(|m| s.rss_bytes > m);
            let over_cpu = limits.cpu_time.is_some_and(|l| cpu >= l);
            if over_memory || over_cpu {
                self.reason = Some(if over_memory {
                    Exit::MemoryLimit
                } else {
                    Exit::CpuLimit
                });
                kill_tree(c, &self.members);
                self.killed = true;
                self.kill_at = Some(now);
            }
        }
        self.next_sample = now + self.sample_every;
    }

    /// Sleep until the next thing to do: naps double up to [`MAX_NAP`], so a short command
    /// is seen to end soon and a long one costs little.
    fn nap(&mut self, now: Instant) {
        let mut wake = (now + self.nap).min(self.next_sample);
        if let Some(t) = self.timeout_at.filter(|_| self.reason.is_none()) {
            wake = wake.min(t);
        }
        if let Some(t) = self.kill_at.filter(|_| !self.killed) {
            wake = wake.min(t);
        }
        self.exit.nap(
            wake.saturating_duration_since(now)
                .max(Duration::from_micros(200)),
        );
        self.nap = (self.nap * 2).min(MAX_NAP);
    }
}

fn cgroup_procs(cgroup: &Option<CommandCgroup>) -> Vec<u32> {
    cgroup.as_ref().map(|c| c.procs()).unwrap_or_default()
}

/// SIGKILL to the tree: in a PID namespace its keeper (the kernel kills the rest); else the
/// members last seen and the cgroup, the keeper staying alive (the subreaper holds the
/// tree together until the sweep has killed all of it).
fn kill_tree(c: &Child, members: &[Ident]) {
    if c.pid_ns {
        procfs::signal_ident((c.pid, c.pid_start_time), libc::SIGKILL);
    }
    for &m in members.iter().filter(|m| m.0 != c.pid) {
        procfs::signal_ident(m, libc::SIGKILL);
    }
    if let Some(cg) = &c.cgroup {
        cg.kill_all();
    }
}

/// Phase 4, the sweep: nothing the command started outlives it. The leader is an unreaped
/// zombie, so its process group id is still ours to signal. A stop already under way keeps
/// its grace; otherwise the survivors get SIGTERM and [`TERM_GRACE`] now; then SIGKILL
/// until none is found.
fn sweep(c: &Child, w: &mut Watch) {
    let leader = c.pid;
    let survivors = |tracker: &mut TreeTracker| -> Vec<Ident> {
        let procs = cgroup_procs(&c.cgroup);
        tracker
            .sample(true, &procs)
            .members
            .iter()
            .filter(|m| m.pid != leader && !m.is_dead())
            .map(|m| m.ident())
            .collect()
    };
    let tracker = &mut w.tracker;
    let left = survivors(tracker);
    if left.is_empty() {
        return;
    }
    tracing::debug!(
        "{} process(es) outlived the command {:?}; stopping them",
        left.len(),
        c.reaper.tag
    );
    let grace_until = match w.kill_at {
        Some(t) => t,
        None => {
            procfs::signal_group(leader, libc::SIGTERM);
            for &m in &left {
                procfs::signal_ident(m, libc::SIGTERM);
            }
            procfs::signal_group(leader, libc::SIGCONT);
            Instant::now() + TERM_GRACE
        }
    };
    procfs::wait_gone(&left, grace_until);
    kill_tree(c, &[]);
    procfs::kill_rounds(|| survivors(tracker));
}

/// Phase 5: reap the child, stop feeding it, read the counter, and say how it ended.
fn outcome(
    spec: &CommandSpec,
    mut c: Child,
    w: Watch,
    exited_at: Instant,
    ended_at_ms: u64,
) -> io::Result<Outcome> {
    let pid = c.pid;
    // The tree is gone (swept): the keeper may go, then be reaped.
    procfs::signal_ident((pid, c.pid_start_time), libc::SIGKILL);
    let (keeper_status, ru) =
        reap(pid).map_err(|e| with_context(e, format_args!("reaping pid {pid}")))?;
    c.reaper.reaped = true;
    let status = w.command_status.unwrap_or(keeper_status);
    if let Some(f) = c.feeder.take() {
        f.finish();
    }
    let instructions = match &c.counter {
        Some(counter) => Some(
            counter
                .read()
                .map_err(|e| with_context(e, "reading the instruction counter"))?,
        ),
        None => None,
    };
    // rusage misses descendants the leader never waited for (killed trees, escaped
    // processes): the sampled CPU time of the tree is a floor.
    let tree_cpu = w.tree_cpu;
    let cpu_ms =
        (timeval_ms(ru.ru_utime) + timeval_ms(ru.ru_stime)).max(tree_cpu.as_millis() as u64);
    let peak_rss = w.peak.max((ru.ru_maxrss.max(0) as u64) * 1024);
    let reason = w.reason;
    tracing::debug!(
        "{:?} (pid {pid}) ended: wait status {status:#x}, stop reason {reason:?}, \
         cpu_ms {cpu_ms}, sampled tree cpu {tree_cpu:?}, peak rss {peak_rss}",
        spec.tag
    );
    let exit = match reason {
        Some(r) => r,
        None => classify(
            status_exit(status),
            spec,
            cpu_ms,
            c.cgroup.as_ref().is_some_and(|cg| cg.oom_killed()),
            c.data_limit.is_some(),
        ),
    };
    drop(c.cgroup.take());
    Ok(Outcome {
        exit,
        wall_ms: exited_at.duration_since(c.started).as_millis() as u64,
        wall_us: Some(exited_at.duration_since(c.started).as_micros() as u64),
        cpu_ms,
        peak_rss,
        instructions,
        started_at_ms: c.started_at_ms,
        ended_at_ms,
        pid,
        pid_start_time: c.pid_start_time,
        queue_ms: None,
        job_id: None,
        node: None,
        frozen_ms: None,
        froze: None,
    })
}

/// A wait status as an exit code or a signal.
fn status_exit(status: i32) -> Exit {
    if libc::WIFEXITED(status) {
        Exit::Code {
            code: libc::WEXITSTATUS(status),
        }
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal {
            signal: libc::WTERMSIG(status),
        }
    } else {
        Exit::Code { code: -1 }
    }
}

fn with_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn short(command: &str) -> String {
    const MAX: usize = 120;
    if command.len() <= MAX {
        return command.to_string();
    }
    let mut end = MAX;
    while !command.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &command[..end])
}

/// Create/truncate the output files (before anything else can fail), and the pipes the
/// child writes into: each stream reaches its file through [`Sinks`], which keep its head
/// and tail. The child's ends of the pipes, and the sinks.
fn open_outputs(spec: &CommandSpec) -> io::Result<(OwnedFd, OwnedFd, Sinks)> {
    let open = |p: &Path| -> io::Result<std::fs::File> {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| with_context(e, format_args!("creating {}", dir.display())))?;
        }
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(p)
            .map_err(|e| with_context(e, format_args!("creating {}", p.display())))
    };
    let cap = spec.limits.output.unwrap_or(DEFAULT_OUTPUT_CAP);
    let stream = |file: std::fs::File| -> io::Result<(OwnedFd, (OwnedFd, std::fs::File))> {
        let (read, write) = spawn::pipe()?;
        Ok((spawn::above_stdio(write)?, (read, file)))
    };
    let (out, out_stream) = stream(open(&spec.stdout)?)?;
    if spec.stderr == spec.stdout {
        let err = spawn::above_stdio(out.try_clone()?)?;
        return Ok((out, err, Sinks::start(vec![out_stream], cap)?));
    }
    let (err, err_stream) = stream(open(&spec.stderr)?)?;
    Ok((out, err, Sinks::start(vec![out_stream, err_stream], cap)?))
}

/// The output sinks, once the tree is gone: every byte written is in the files.
fn finish_outputs(sinks: Option<Sinks>, what: &dyn Fn() -> String) {
    if let Some(Err(e)) = sinks.map(Sinks::finish) {
        tracing::warn!("{}: copying the output: {e}", what());
    }
}

/// Kills and reaps the child if `run` leaves early (error or panic).
struct Reaper<'a> {
    pid: u32,
    tag: &'a str,
    reaped: bool,
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        procfs::signal_group(self.pid, libc::SIGKILL);
        // SAFETY: pid is our unreaped child.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(self.pid as libc::pid_t, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
        procfs::kill_matching(TagMatch::Exact(self.tag), Duration::ZERO);
    }
}

/// The command's wait status, once the keeper has reported it (non-blocking).
fn command_status(status: &OwnedFd) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 4];
    // SAFETY: reading into a local buffer from a pipe we own.
    let n = unsafe { libc::read(status.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 4) };
    (n == 4).then(|| i32::from_ne_bytes(b))
}

/// Has the child exited? Does not reap it (WNOWAIT), so its pid and process group id stay
/// reserved while we signal the group.
fn exited_nowait(pid: u32) -> io::Result<bool> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            // SAFETY: waitid filled info (si_pid is 0 when nothing changed).
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reap the (exited) child: its wait status and the rusage of it and its waited-for
/// descendants.
fn reap(pid: u32) -> io::Result<(i32, libc::rusage)> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills status and ru.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        if r == pid as libc::pid_t {
            return Ok((status, ru));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn timeval_ms(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1000 + (t.tv_usec.max(0) as u64) / 1000
}
