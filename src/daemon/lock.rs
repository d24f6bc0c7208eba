//! One daemon per state dir: an exclusive `flock` on the state dir itself (its directory
//! inode), held for the daemon's life. A child that deletes or replaces files in the state
//! dir cannot release it; `daemon.pid` only says who holds it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

pub struct PidLock {
    _lock: Flock<File>,
    pid_file: PathBuf,
}

impl PidLock {
    pub fn acquire(state_dir: &Path) -> Result<PidLock> {
        let dir = File::open(state_dir)
            .with_context(|| format!("opening the state dir {}", state_dir.display()))?;
        let pid_file = state_dir.join("daemon.pid");
        let lock = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err(_) => {
                let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
                let pid = pid.trim();
                bail!(
                    "another arctl daemon{} is using the state dir {}",
                    if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                    state_dir.display()
                );
            }
        };
        let mut f =
            File::create(&pid_file).with_context(|| format!("writing {}", pid_file.display()))?;
        writeln!(f, "{}", std::process::id())?;
        f.sync_all()?;
        Ok(PidLock {
            _lock: lock,
            pid_file,
        })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_does_not_depend_on_the_pid_file() {
        let d = tempfile::tempdir().unwrap();
        let first = super::PidLock::acquire(d.path()).unwrap();
        std::fs::remove_file(d.path().join("daemon.pid")).unwrap();
        let e = super::PidLock::acquire(d.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("another arctl daemon"), "{e}");
        drop(first);
        assert!(super::PidLock::acquire(d.path()).is_ok());
    }
}
