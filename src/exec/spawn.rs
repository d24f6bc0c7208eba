//! fork + exec of `sh -c <command>` with everything the child needs prepared beforehand, so
//! the child side only makes async-signal-safe system calls.
//!
//! The child is held ("gated") after its own setup and before `execve` until the parent
//! has attached the instruction counter and moved it into its cgroup; std's `Command`
//! cannot do this (its `spawn` waits for the exec), hence the hand-written fork. Exec and
//! setup failures come back to the parent through a close-on-exec pipe.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

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
}

fn stage_name(code: u32) -> &'static str {
    match code {
        1 => "setpgid",
        2 => "redirecting stdio",
        3 => "setrlimit",
        4 => "sched_setaffinity (pinning to cpus)",
        5 => "chdir",
        6 => "execve /bin/sh",
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
        })
    }
}

/// The fds the child gets (all ≥ 3, close-on-exec in the parent).
pub(crate) struct ChildFds<'a> {
    pub stdin: &'a OwnedFd,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
    /// Read end of the gate: the child blocks reading one byte before exec.
    pub gate: &'a OwnedFd,
    /// Write end of the gate, which the child must close before waiting on it.
    pub gate_parent: &'a OwnedFd,
    /// Write end of the error pipe.
    pub err: &'a OwnedFd,
}

/// Fork. In the child, set up and wait at the gate, then exec (never returns). In the
/// parent, return the child's pid.
pub(crate) fn fork_gated(p: &Prepared, fds: &ChildFds<'_>) -> io::Result<u32> {
    let parent = std::process::id() as libc::pid_t;
    let raw = RawFds {
        stdin: fds.stdin.as_raw_fd(),
        stdout: fds.stdout.as_raw_fd(),
        stderr: fds.stderr.as_raw_fd(),
        gate: fds.gate.as_raw_fd(),
        gate_parent: fds.gate_parent.as_raw_fd(),
        err: fds.err.as_raw_fd(),
    };
    // SAFETY: the child branch only makes async-signal-safe calls on data prepared before
    // the fork, and always ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { child(p, &raw, parent) }
    }
    Ok(pid as u32)
}

struct RawFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    gate: RawFd,
    gate_parent: RawFd,
    err: RawFd,
}

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

/// The child side. Async-signal-safe calls only: no allocation, no locks.
unsafe fn child(p: &Prepared, fds: &RawFds, parent: libc::pid_t) -> ! {
    // Default dispositions (Rust ignores SIGPIPE; a daemon may ignore others) and an
    // empty signal mask, as a freshly started program expects.
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

    // Die with the thread that runs us (it outlives us unless the daemon dies).
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    if libc::getppid() != parent {
        libc::_exit(127);
    }
    if libc::setpgid(0, 0) != 0 {
        fail(fds.err, Stage::Setpgid);
    }
    if libc::dup2(fds.stdin, 0) < 0
        || libc::dup2(fds.stdout, 1) < 0
        || libc::dup2(fds.stderr, 2) < 0
    {
        fail(fds.err, Stage::Dup2);
    }
    // Nothing else of the daemon's (sockets, the pid-file lock, other runs' pipes) leaks
    // into the command: mark every other fd close-on-exec. Ignored where unsupported.
    libc::syscall(
        libc::SYS_close_range,
        3 as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC,
    );
    // No core files in the worktree (SIGXCPU and crashes dump core by default).
    let mut core: libc::rlimit = std::mem::zeroed();
    if libc::getrlimit(libc::RLIMIT_CORE, &mut core) == 0 {
        core.rlim_cur = 0;
        libc::setrlimit(libc::RLIMIT_CORE, &core);
    }
    if let Some(l) = &p.cpu_rlimit {
        if libc::setrlimit(libc::RLIMIT_CPU, l) != 0 {
            fail(fds.err, Stage::Setrlimit);
        }
    }
    if let Some(l) = &p.data_rlimit {
        if libc::setrlimit(libc::RLIMIT_DATA, l) != 0 {
            fail(fds.err, Stage::Setrlimit);
        }
    }
    if let Some(set) = &p.cpuset {
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
            fail(fds.err, Stage::Affinity);
        }
    }
    // The gate: wait for the parent's go (one byte). EOF means the parent gave up.
    libc::close(fds.gate_parent);
    let mut b = 0u8;
    loop {
        let n = libc::read(fds.gate, &mut b as *mut u8 as *mut libc::c_void, 1);
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        libc::_exit(127);
    }
    if libc::chdir(p.cwd.as_ptr()) != 0 {
        fail(fds.err, Stage::Chdir);
    }
    libc::execve(p.sh.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
    fail(fds.err, Stage::Exec)
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
        let n = unsafe {
            libc::read(
                err_read.as_raw_fd(),
                buf[got..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - got,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
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
