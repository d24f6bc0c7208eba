//! What this machine offers to confine children, probed once: the Landlock ABI version
//! (filesystem rules, signal scoping) and whether a child can get PID, mount and network
//! namespaces of its own (directly as root, else inside an unprivileged user namespace).
//! `exec` builds its containment from these facts; `spec::check_host` judges a spec's
//! `[sandbox]` by them.

use std::sync::OnceLock;

/// How a child can be put in namespaces of its own here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// The clone flags that work for a PID + mount namespace (with CLONE_NEWUSER when this
    /// process lacks CAP_SYS_ADMIN); Err: why there are none (a child subreaper then).
    pub pid: Result<i32, String>,
    /// Same, with a network namespace too.
    pub net: Result<i32, String>,
}

impl Namespaces {
    /// Whether the PID namespace goes through a user namespace.
    pub fn via_user_namespace(&self) -> bool {
        self.pid
            .as_ref()
            .is_ok_and(|f| f & libc::CLONE_NEWUSER != 0)
    }
}

/// The Landlock ABI version of the running kernel (1 = Linux 5.13; 6 adds signal and
/// abstract-socket scoping). Err: why there is none.
pub fn landlock_abi() -> Result<u32, String> {
    static ABI: OnceLock<Result<u32, String>> = OnceLock::new();
    ABI.get_or_init(|| {
        const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
        // SAFETY: with a null attribute and the VERSION flag the call only returns a number.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        if r > 0 {
            return Ok(r as u32);
        }
        let e = std::io::Error::last_os_error();
        Err(match e.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no Landlock (Linux >= 5.13 needed)".into(),
            Some(libc::EOPNOTSUPP) => {
                "Landlock is disabled in this kernel (lsm= boot option)".into()
            }
            _ => format!("Landlock: {e}"),
        })
    })
    .clone()
}

/// Which namespaces a child can get (probed once with a throw-away child).
pub fn namespaces() -> &'static Namespaces {
    static NS: OnceLock<Namespaces> = OnceLock::new();
    NS.get_or_init(|| {
        let base = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
        let pid = probe_flags(base);
        let net = match &pid {
            Ok(f) => probe(f | libc::CLONE_NEWNET).map(|()| f | libc::CLONE_NEWNET),
            Err(e) => Err(e.clone()),
        };
        let ns = Namespaces { pid, net };
        tracing::debug!(?ns, "namespaces for children");
        ns
    })
}

/// `flags` directly when this process may (root), else inside a new user namespace.
fn probe_flags(flags: i32) -> Result<i32, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && probe(flags).is_ok() {
        return Ok(flags);
    }
    let with_user = flags | libc::CLONE_NEWUSER;
    probe(with_user).map(|()| with_user)
}

/// Fork a child that only calls unshare(flags) and reports by its exit code.
fn probe(flags: i32) -> Result<(), String> {
    // SAFETY: the child only calls unshare and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: we are the forked child; errno is read right after the call.
        unsafe {
            let code = if libc::unshare(flags) == 0 {
                0
            } else {
                (*libc::__errno_location()).clamp(1, 125)
            };
            libc::_exit(code)
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err("lost the probe child".into());
        }
    }
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(errno) => Err(format!(
            "unshare: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
        None => Err("the probe child was killed".into()),
    }
}
