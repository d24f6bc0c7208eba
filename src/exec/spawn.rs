//! fork + exec of `sh -c <command>` with everything the child needs prepared beforehand, so
//! the child side only makes async-signal-safe system calls.
//!
//! Two processes per command: the **keeper** (cloned, into new PID/mount/user/network
//! namespaces when contained, sharing the daemon's fd table until its first call copies the
//! low fds: see `fork_keeper`) is the root of the command's tree and reaps all of it; the
//! **command** (forked by the keeper) applies the limits and the Landlock sandbox and execs
//! `sh -c`. The keeper is held ("gated") after its own setup until the parent has attached
//! the instruction counter and moved it into its cgroup; std's `Command` cannot do this
//! (its `spawn` waits for the exec), hence the hand-written fork. Exec and setup failures
//! come back to the parent through a close-on-exec pipe; the command's wait status through
//! the status pipe.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// A system call's result, the call made again while a signal interrupts it (`EINTR`); a
/// negative result is the error the call set.
pub(crate) fn retry_interrupted<T: Copy + Default + PartialOrd>(
    mut call: impl FnMut() -> T,
) -> io::Result<T> {
    loop {
        let r = call();
        if r >= T::default() {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A pipe (read end, write end), both close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// A connected pair of Unix stream sockets, both close-on-exec: the gate. A socket rather
/// than a pipe so that the parent's write can use MSG_NOSIGNAL (no SIGPIPE if the child
/// died early).
pub(crate) fn gate_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid 2-element array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two new fds that nothing else owns.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// Make sure an fd handed to the child is ≥ 3, so the child's dup2 onto 0/1/2 cannot clobber
/// it (a daemon started with closed stdio gets fds 0..2 from open()).
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd we then own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where the child setup failed (sent through the error pipe with the errno).
#[derive(Clone, Copy)]
#[repr(u32)]
enum Stage {
    Setpgid = 1,
    Dup2 = 2,
    Setrlimit = 3,
    Affinity = 4,
    Chdir = 5,
    Exec = 6,
    UserNs = 7,
    Landlock = 8,
    Fork = 9,
    Fds = 10,
}

fn stage_name(code: u32) -> &'static str {
    match code {
        1 => "setpgid",
        2 => "redirecting stdio",
        3 => "setrlimit",
        4 => "sched_setaffinity (pinning to cpus)",
        5 => "chdir",
        6 => "execve /bin/sh",
        7 => "mapping the uid in the user namespace",
        8 => "landlock_restrict_self (the sandbox)",
        9 => "fork of the command by its keeper",
        10 => "arranging the keeper's file descriptors",
        _ => "child setup",
    }
}

/// Everything the child needs, prepared in the parent.
pub(crate) struct Prepared {
    sh: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    cpu_rlimit: Option<libc::rlimit>,
    data_rlimit: Option<libc::rlimit>,
    cpuset: Option<libc::cpu_set_t>,
    /// Namespaces of the keeper (0: a plain fork, the keeper a child subreaper).
    clone_flags: i32,
    /// "uid uid 1" and "gid gid 1", written by the keeper in a new user namespace.
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// The Landlock ruleset the command applies to itself before `execve`.
    landlock: Option<OwnedFd>,
}

fn cstring(bytes: Vec<u8>, what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// Current hard limit of a resource (to clamp what we set; raising it needs privilege).
fn hard_limit(resource: i32) -> libc::rlim_t {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(resource as _, &mut cur) };
    cur.rlim_max
}

fn clamp(soft: u64, hard: u64, resource: i32) -> libc::rlimit {
    let max = hard_limit(resource);
    libc::rlimit {
        rlim_cur: (soft as libc::rlim_t).min(max),
        rlim_max: (hard as libc::rlim_t).min(max),
    }
}

impl Prepared {
    /// `data_limit`: RLIMIT_DATA (soft = hard) to set, if any. `cpu_secs`: RLIMIT_CPU soft
    /// limit in whole seconds (hard = soft + 1).
    pub fn new(
        command: &str,
        cwd: &Path,
        env: &[(String, String)],
        cpu_secs: Option<u64>,
        data_limit: Option<u64>,
        cpus: Option<&[usize]>,
    ) -> io::Result<Prepared> {
        let sh = cstring(b"/bin/sh".to_vec(), "shell path")?;
        let argv = vec![
            cstring(b"sh".to_vec(), "argv")?,
            cstring(b"-c".to_vec(), "argv")?,
            cstring(command.as_bytes().to_vec(), "command")?,
        ];
        let mut envp = Vec::new();
        let overridden = |k: &OsStr| env.iter().any(|(ek, _)| OsStr::new(ek) == k);
        for (k, v) in std::env::vars_os() {
            if overridden(&k) {
                continue;
            }
            let mut kv: OsString = k;
            kv.push("=");
            kv.push(v);
            // An inherited variable with a NUL cannot exist; skip defensively.
            if let Ok(c) = CString::new(kv.into_vec()) {
                envp.push(c);
            }
        }
        for (k, v) in env {
            if k.is_empty() || k.contains('=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid environment variable name {k:?}"),
                ));
            }
            envp.push(cstring(
                format!("{k}={v}").into_bytes(),
                "environment variable",
            )?);
        }
        let cwd = cstring(cwd.as_os_str().as_bytes().to_vec(), "cwd")?;
        let cpu_rlimit = cpu_secs.map(|s| clamp(s.max(1), s.max(1) + 1, libc::RLIMIT_CPU as i32));
        let data_rlimit = data_limit.map(|d| clamp(d, d, libc::RLIMIT_DATA as i32));
        let cpuset = match cpus {
            None => None,
            Some([]) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cpus: empty list of cores to pin to",
                ))
            }
            Some(list) => {
                // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
                let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
                for &c in list {
                    if c >= max {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("cpus: core id {c} out of range"),
                        ));
                    }
                    // SAFETY: c < CPU_SETSIZE, checked above.
                    unsafe { libc::CPU_SET(c, &mut set) };
                }
                Some(set)
            }
        };
        let argv_ptrs = argv
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp_ptrs = envp
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(Prepared {
            sh,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            cwd,
            cpu_rlimit,
            data_rlimit,
            cpuset,
            clone_flags: 0,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            landlock: None,
        })
    }

    /// Put the keeper in namespaces of its own (`clone_flags`, see `host::sandbox`) and
    /// confine the command with a Landlock ruleset.
    pub fn contain(&mut self, clone_flags: i32, landlock: Option<OwnedFd>) {
        self.clone_flags = clone_flags;
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        self.uid_map = format!("{uid} {uid} 1\n").into_bytes();
        self.gid_map = format!("{gid} {gid} 1\n").into_bytes();
        self.landlock = landlock;
    }

    /// Does the keeper get a PID namespace (so its death kills the whole tree)?
    pub fn pid_namespace(&self) -> bool {
        self.clone_flags & libc::CLONE_NEWPID != 0
    }
}

/// The fds the keeper gets (all ≥ 3, close-on-exec in the parent).
pub(crate) struct ChildFds<'a> {
    pub stdin: &'a OwnedFd,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
    /// Read end of the gate: the keeper blocks reading one byte before starting the command.
    pub gate: &'a OwnedFd,
    /// Write end of the error pipe.
    pub err: &'a OwnedFd,
    /// Write end of the status pipe: the keeper writes the command's wait status there.
    pub status: &'a OwnedFd,
}

/// The arguments of clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Start the keeper: a fork (or a clone into new namespaces) that sets up, waits at the
/// gate, starts the command and reaps every process of the tree until it ends. Returns the
/// keeper's pid in the parent (never returns in the child).
///
/// The keeper is the root of the command's tree: as the init of a PID namespace, or as a
/// child subreaper, every descendant stays below it whatever it does to its session, group
/// or parent, so the tree is found by parent pids alone.
/// `gate_parent` is the parent's end of `fds.gate`.
pub(crate) fn fork_keeper(
    p: &Prepared,
    fds: &ChildFds<'_>,
    gate_parent: &OwnedFd,
) -> io::Result<u32> {
    let parent = std::process::id() as libc::pid_t;
    let raw = RawFds {
        stdin: fds.stdin.as_raw_fd(),
        stdout: fds.stdout.as_raw_fd(),
        stderr: fds.stderr.as_raw_fd(),
        gate: fds.gate.as_raw_fd(),
        err: fds.err.as_raw_fd(),
        status: fds.status.as_raw_fd(),
        landlock: p.landlock.as_ref().map_or(-1, |f| f.as_raw_fd()),
    };
    // The keeper shares the daemon's fd table (CLONE_FILES) until its first system call
    // gives it a copy of the low fds only (`unshare_fds`): a fork would copy every fd, and
    // the stat walk keeps thousands of handles open (`git::fast::listing`), which made each
    // fork of a 10,000-file run ~1 ms dearer. The parent waits for that copy before it
    // closes the child's ends.
    let mut pidfd: RawFd = -1;
    let args = CloneArgs {
        flags: (p.clone_flags | libc::CLONE_FILES | libc::CLONE_PIDFD) as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM has fork semantics; the child branch only makes
    // async-signal-safe calls on data prepared before, and always ends in execve or _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly cloned child.
        unsafe { keeper(p, &raw, parent) }
    }
    // SAFETY: clone3 stored a new pidfd, ours alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if let Err(e) = wait_unshared(gate_parent, &pidfd) {
        // SAFETY: reaping our own child, which ended (or is killed here first).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
        return Err(e);
    }
    Ok(pid as u32)
}

/// Wait for the keeper's byte on the gate: it has its own fd table now. An error if it
/// ended first.
fn wait_unshared(gate: &OwnedFd, keeper: &OwnedFd) -> io::Result<()> {
    let mut polled = [
        libc::pollfd {
            fd: gate.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: keeper.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: two valid pollfds.
        retry_interrupted(|| unsafe { libc::poll(polled.as_mut_ptr(), 2, -1) })?;
        if polled[0].revents & libc::POLLIN != 0 {
            let mut b = 0u8;
            // SAFETY: one byte into our buffer from the parent's end of the gate.
            let got = unsafe {
                libc::recv(
                    gate.as_raw_fd(),
                    &mut b as *mut u8 as *mut libc::c_void,
                    1,
                    0,
                )
            };
            if got == 1 {
                return Ok(());
            }
        }
        if polled[1].revents != 0 || polled[0].revents != 0 {
            return Err(io::Error::other("the keeper ended before it started"));
        }
    }
}

struct RawFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    gate: RawFd,
    err: RawFd,
    status: RawFd,
    landlock: RawFd,
}

/// Where the keeper puts the fds it keeps (after stdio).
const STATUS_FD: RawFd = 3;
const GATE_FD: RawFd = 4;
const ERR_FD: RawFd = 5;
const LANDLOCK_FD: RawFd = 6;

unsafe fn errno() -> i32 {
    *libc::__errno_location()
}

unsafe fn fail(err_fd: RawFd, stage: Stage) -> ! {
    let e = errno();
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&e.to_ne_bytes());
    libc::write(err_fd, msg.as_ptr() as *const libc::c_void, msg.len());
    libc::_exit(127)
}

/// Default dispositions (Rust ignores SIGPIPE; a daemon may ignore others) and an empty
/// signal mask, as a freshly started program expects.
unsafe fn default_signals() {
    let mut act: libc::sigaction = std::mem::zeroed();
    act.sa_sigaction = libc::SIG_DFL;
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
}

/// Write `data` to the file at `path`.
unsafe fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> bool {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let ok =
        libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) == data.len() as isize;
    libc::close(fd);
    ok
}

/// In a new network namespace: bring the loopback interface up (servers on 127.0.0.1 keep
/// working, nothing else is reachable). Best effort.
unsafe fn loopback_up() {
    let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if s < 0 {
        return;
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) == 0 {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
    }
    libc::close(s);
}

/// The namespaces' setup, in the keeper: the uid map of a new user namespace, a private
/// mount tree with a `/proc` of the new PID namespace (so `ps`, `pkill` and `/proc/$$`
/// see the command's own tree; best effort), the loopback of a new network namespace.
unsafe fn enter_namespaces(p: &Prepared, err: RawFd) {
    let f = p.clone_flags;
    if f & libc::CLONE_NEWUSER != 0
        && !(write_proc(c"/proc/self/setgroups", b"deny")
            && write_proc(c"/proc/self/uid_map", &p.uid_map)
            && write_proc(c"/proc/self/gid_map", &p.gid_map))
    {
        fail(err, Stage::UserNs);
    }
    if f & libc::CLONE_NEWNS != 0 && f & libc::CLONE_NEWPID != 0 {
        let none = c"none".as_ptr();
        let root = c"/".as_ptr();
        if libc::mount(
            none,
            root,
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
        {
            let proc_ = c"proc".as_ptr();
            let target = c"/proc".as_ptr();
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            libc::mount(proc_, target, proc_, flags, std::ptr::null());
        }
    }
    if f & libc::CLONE_NEWNET != 0 {
        loopback_up();
    }
}

/// Keep only stdio and the keeper's own fds (at fixed numbers): nothing of the daemon's
/// (sockets, the state dir's lock, other commands' pipes) stays open in the keeper, which
/// never execs.
unsafe fn keep_only_own_fds(fds: &RawFds) {
    if libc::dup2(fds.stdin, 0) < 0
        || libc::dup2(fds.stdout, 1) < 0
        || libc::dup2(fds.stderr, 2) < 0
    {
        fail(fds.err, Stage::Dup2);
    }
    let wanted = [fds.status, fds.gate, fds.err, fds.landlock];
    let high = 1 + wanted.iter().copied().max().unwrap_or(0).max(LANDLOCK_FD);
    let mut moved = [-1; 4];
    for (i, &fd) in wanted.iter().enumerate() {
        if fd >= 0 {
            moved[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high);
            if moved[i] < 0 {
                fail(fds.err, Stage::Fds);
            }
        }
    }
    for (i, &fd) in moved.iter().enumerate() {
        if fd >= 0 && libc::dup3(fd, STATUS_FD + i as RawFd, libc::O_CLOEXEC) < 0 {
            fail(fds.err, Stage::Fds);
        }
    }
    let first_free = if fds.landlock >= 0 {
        LANDLOCK_FD + 1
    } else {
        LANDLOCK_FD
    };
    libc::syscall(
        libc::SYS_close_range,
        first_free as libc::c_uint,
        libc::c_uint::MAX,
        0 as libc::c_uint,
    );
}

/// The keeper's own fd table, a copy of the daemon's fds up to its own highest (none of the
/// walk's handles above), then its byte on the gate. The first thing the keeper does:
/// until then the table is the daemon's, where nothing may be changed.
unsafe fn unshare_fds(fds: &RawFds) {
    let wanted = [
        fds.stdin,
        fds.stdout,
        fds.stderr,
        fds.gate,
        fds.err,
        fds.status,
        fds.landlock,
    ];
    let high = 1 + wanted.iter().copied().max().unwrap_or(0);
    let unshared = libc::syscall(
        libc::SYS_close_range,
        high as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_UNSHARE,
    ) == 0
        || libc::unshare(libc::CLONE_FILES) == 0;
    if !unshared {
        libc::_exit(127);
    }
    let b = b'u';
    let sent = libc::send(
        fds.gate,
        &b as *const u8 as *const libc::c_void,
        1,
        libc::MSG_NOSIGNAL,
    );
    if sent != 1 {
        libc::_exit(127);
    }
}

/// The keeper. Async-signal-safe calls only: no allocation, no locks.
unsafe fn keeper(p: &Prepared, fds: &RawFds, parent: libc::pid_t) -> ! {
    unshare_fds(fds);
    default_signals();
    // Only SIGKILL ends the keeper: the signals sent to the command's group are not for it.
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
    ] {
        libc::signal(sig, libc::SIG_IGN);
    }
    // Die with the thread that runs us (it outlives us unless the daemon dies).
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    let in_pid_ns = p.pid_namespace();
    // In a new PID namespace the parent is outside it (getppid() is 0); the gate's EOF
    // tells that the parent is gone.
    if !in_pid_ns && libc::getppid() != parent {
        libc::_exit(127);
    }
    enter_namespaces(p, fds.err);
    if !in_pid_ns {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
    if libc::setpgid(0, 0) != 0 {
        fail(fds.err, Stage::Setpgid);
    }
    keep_only_own_fds(fds);
    if let Some(set) = &p.cpuset {
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
            fail(ERR_FD, Stage::Affinity);
        }
    }
    // The gate: wait for the parent's go (one byte). EOF means the parent gave up.
    let mut b = 0u8;
    loop {
        let n = libc::read(GATE_FD, &mut b as *mut u8 as *mut libc::c_void, 1);
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        libc::_exit(127);
    }
    let me = libc::getpid();
    let command_pid = raw_fork();
    if command_pid == 0 {
        command(p, me);
    }
    if command_pid < 0 {
        fail(ERR_FD, Stage::Fork);
    }
    // The command's exec closes its copy: the parent then reads EOF on the error pipe.
    libc::close(ERR_FD);
    libc::close(GATE_FD);
    libc::close(LANDLOCK_FD);
    reap_all(command_pid)
}

/// fork(2) by system call: glibc's `fork` takes locks (malloc, stdio) that a thread of the
/// daemon may have held when the keeper was cloned by system call, which would hang here.
unsafe fn raw_fork() -> libc::pid_t {
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    libc::syscall(
        libc::SYS_clone3,
        &args as *const CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    ) as libc::pid_t
}

/// The keeper's life after the start: reap every process that ends below it (orphans come
/// to it), report the command's wait status on the status pipe, end when nothing is left.
unsafe fn reap_all(command_pid: libc::pid_t) -> ! {
    let mut reported = false;
    loop {
        let mut st = 0;
        let r = libc::waitpid(-1, &mut st, libc::__WALL);
        if r == command_pid && !reported {
            let b = st.to_ne_bytes();
            libc::write(STATUS_FD, b.as_ptr() as *const libc::c_void, b.len());
            reported = true;
        } else if r < 0 {
            match errno() {
                libc::EINTR => continue,
                _ if reported => libc::_exit(0),
                _ => libc::_exit(126),
            }
        }
    }
}

/// The command itself, forked by the keeper: limits, the sandbox, `execve`.
unsafe fn command(p: &Prepared, keeper: libc::pid_t) -> ! {
    default_signals();
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    if libc::getppid() != keeper {
        libc::_exit(127);
    }
    // No core files in the worktree (SIGXCPU and crashes dump core by default).
    let mut core: libc::rlimit = std::mem::zeroed();
    if libc::getrlimit(libc::RLIMIT_CORE, &mut core) == 0 {
        core.rlim_cur = 0;
        libc::setrlimit(libc::RLIMIT_CORE, &core);
    }
    if let Some(l) = &p.cpu_rlimit {
        if libc::setrlimit(libc::RLIMIT_CPU, l) != 0 {
            fail(ERR_FD, Stage::Setrlimit);
        }
    }
    if let Some(l) = &p.data_rlimit {
        if libc::setrlimit(libc::RLIMIT_DATA, l) != 0 {
            fail(ERR_FD, Stage::Setrlimit);
        }
    }
    if p.landlock.is_some() {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0);
        if libc::syscall(
            libc::SYS_landlock_restrict_self,
            LANDLOCK_FD,
            0 as libc::c_uint,
        ) != 0
        {
            fail(ERR_FD, Stage::Landlock);
        }
    }
    if libc::chdir(p.cwd.as_ptr()) != 0 {
        fail(ERR_FD, Stage::Chdir);
    }
    libc::execve(p.sh.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
    fail(ERR_FD, Stage::Exec)
}

/// Release the gate and learn whether the exec succeeded: reads the error pipe to EOF.
pub(crate) fn open_gate(gate_parent: OwnedFd, err_read: OwnedFd) -> io::Result<()> {
    let one = [1u8];
    // SAFETY: sending one byte from a valid buffer on a socket we own.
    let n = unsafe {
        libc::send(
            gate_parent.as_raw_fd(),
            one.as_ptr() as *const libc::c_void,
            1,
            libc::MSG_NOSIGNAL,
        )
    };
    let write_err = (n != 1).then(io::Error::last_os_error);
    drop(gate_parent);
    let mut buf = [0u8; 8];
    let mut got = 0usize;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of buf.
        let n = retry_interrupted(|| unsafe {
            libc::read(
                err_read.as_raw_fd(),
                buf[got..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - got,
            )
        })?;
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    if got == 8 {
        let stage = u32::from_ne_bytes(buf[..4].try_into().unwrap());
        let errno = i32::from_ne_bytes(buf[4..].try_into().unwrap());
        let e = io::Error::from_raw_os_error(errno);
        return Err(io::Error::new(
            e.kind(),
            format!("{}: {e}", stage_name(stage)),
        ));
    }
    if got == 0 {
        if let Some(e) = write_err {
            // The child died before reading the gate (killed from outside?).
            return Err(io::Error::new(
                e.kind(),
                format!("releasing the child: {e}"),
            ));
        }
        return Ok(());
    }
    Err(io::Error::other("short message on the child's error pipe"))
}
