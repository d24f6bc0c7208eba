//! The Landlock ruleset of one command, built in the parent (opening paths allocates) and
//! applied by the forked command itself right before `execve` (`landlock_restrict_self`
//! on the ruleset's fd is one system call). Writes are handled, reads and execution stay
//! open; with ABI >= 6 the command's tree also cannot signal processes outside it or reach
//! abstract Unix sockets made outside it.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use ::landlock::{
    path_beneath_rules, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};

/// The ABI whose rights arctl asks for; an older kernel grants what it knows (best effort).
const TARGET: ABI = ABI::V6;

/// Places every command may write whatever its policy: the null device and terminals,
/// shared memory (Python's multiprocessing, POSIX semaphores) and `/proc/self/...` files.
fn always_writable() -> Vec<(PathBuf, ::landlock::BitFlags<AccessFs>)> {
    let dev = AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
    vec![
        (PathBuf::from("/dev"), dev),
        (PathBuf::from("/dev/shm"), AccessFs::from_write(TARGET)),
        (PathBuf::from("/proc"), AccessFs::WriteFile.into()),
    ]
}

/// The folders beneath which every command may write something, whatever its policy.
pub fn always_writable_dirs() -> Vec<PathBuf> {
    always_writable().into_iter().map(|(p, _)| p).collect()
}

/// A ruleset fd: `writable` (folders: everything beneath; files: the file) and the files in
/// `files` (written, truncated: the command's own output files) may be written; nothing
/// else. Missing paths are skipped. None: the kernel has no Landlock.
pub(super) fn ruleset(writable: &[PathBuf], files: &[PathBuf]) -> io::Result<Option<OwnedFd>> {
    let err = |e: ::landlock::RulesetError| io::Error::other(format!("landlock: {e}"));
    let write = AccessFs::from_write(TARGET);
    let mut created = Ruleset::default()
        .handle_access(write)
        .map_err(err)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(writable, write))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            files,
            AccessFs::WriteFile | AccessFs::Truncate,
        ))
        .map_err(err)?;
    for (path, access) in always_writable() {
        created = created
            .add_rules(path_beneath_rules([path], access))
            .map_err(err)?;
    }
    Ok(created.into())
}
