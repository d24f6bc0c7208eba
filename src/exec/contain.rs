//! Process containment: how a command's tree is held together (the keeper at its root, in a
//! PID namespace of its own where the machine allows, else a child subreaper), the
//! [`Sandbox`] a command runs in, and, from the daemon-wide registry of running commands
//! (`running`), "did arctl start this process?" (the daemon refuses state-changing requests
//! from its own children).

use std::path::PathBuf;

use super::procfs::{self, Ident};

/// How one command is confined, beyond its limits.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Landlock: the only places the tree may write (folders: all beneath). None: no
    /// filesystem rules. The command's own output files are always writable.
    pub writable: Option<Vec<PathBuf>>,
    /// A PID (and mount) namespace of its own where the machine offers one; otherwise (and
    /// when false) the keeper is a child subreaper.
    pub isolate: bool,
    /// false: a network namespace of its own with only a loopback interface.
    pub network: bool,
}

impl Default for Sandbox {
    /// No filesystem rules, no namespaces, the network: what `exec::run` gives.
    fn default() -> Self {
        Sandbox {
            writable: None,
            isolate: false,
            network: true,
        }
    }
}

/// How commands' trees are contained on this machine, for `arctl status`.
pub fn containment() -> String {
    let ns = crate::host::sandbox::namespaces();
    match &ns.pid {
        Ok(_) if ns.via_user_namespace() => "PID namespace (in a user namespace)".into(),
        Ok(_) => "PID namespace".into(),
        Err(why) => format!("child subreaper (no PID namespace: {why})"),
    }
}

/// The clone flags of a keeper under `sandbox`. Err: it asks for what this machine lacks.
pub(super) fn clone_flags(sandbox: &Sandbox) -> std::io::Result<i32> {
    let ns = crate::host::sandbox::namespaces();
    if !sandbox.network {
        return ns.net.clone().map_err(|why| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("network = false needs a network namespace: {why}"),
            )
        });
    }
    Ok(match (&ns.pid, sandbox.isolate) {
        (Ok(f), true) => *f,
        _ => 0,
    })
}

/// The pids of the running commands whose tag starts with `prefix` (see
/// [`super::running::pids`]).
pub fn running_pids(prefix: &str) -> Vec<(String, Vec<u32>)> {
    super::running::pids(prefix)
}

/// Whether the process `pid` was started by a command of this process (arctl): one of its
/// ancestors is a running keeper. A keeper is the root of its whole tree (PID namespace
/// init or subreaper), so no descendant leaves this chain by changing its session, group
/// or environment. None: `pid` is not there (it exited, or is not visible here).
pub fn started_by_arctl(pid: u32) -> Option<bool> {
    let first = procfs::read_stat(pid)?;
    let keepers: Vec<Ident> = super::running::keepers();
    let mut cur = Some(first);
    // A chain longer than this would be a loop (pids recycled under the walk).
    for _ in 0..4096 {
        let Some(s) = cur else { break };
        if keepers.contains(&s.ident()) {
            return Some(true);
        }
        if s.ppid <= 1 {
            break;
        }
        cur = procfs::read_stat(s.ppid);
    }
    Some(false)
}
