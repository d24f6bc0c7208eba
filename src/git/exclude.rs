//! The run's lines in `$GIT_COMMON_DIR/info/exclude`, shared by all worktrees of a repo,
//! edited under a lock so parallel runs don't lose each other's lines.

use std::fs::{self, OpenOptions};
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

fn with_lock<T>(common_dir: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    // arctl's own change: not a child's (see `snapshot`).
    super::snapshot::own_write(common_dir, &["info/exclude"], || {
        with_lock_inner(common_dir, f)
    })
}

fn with_lock_inner<T>(common_dir: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let info = common_dir.join("info");
    fs::create_dir_all(&info).with_context(|| format!("creating {}", info.display()))?;
    let lock_path = info.join("exclude.arctl-lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", lock_path.display()))?;
    f(&info.join("exclude"))
}

/// Append `lines` that are not there yet.
pub fn add(common_dir: &Path, lines: &[String]) -> Result<()> {
    with_lock(common_dir, |path| {
        let text = fs::read_to_string(path).unwrap_or_default();
        let have: Vec<&str> = text.lines().collect();
        let mut out = text.clone();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let mut changed = false;
        for l in lines {
            if !have.contains(&l.as_str()) {
                out.push_str(l);
                out.push('\n');
                changed = true;
            }
        }
        if changed {
            crate::store::write_atomic(path, out.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })
}

/// Remove exactly these lines, keeping everything else.
pub fn remove(common_dir: &Path, lines: &[String]) -> Result<()> {
    with_lock(common_dir, |path| {
        let Ok(text) = fs::read_to_string(path) else {
            return Ok(());
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !lines.iter().any(|x| x == l))
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        if out != text {
            crate::store::write_atomic(path, out.as_bytes())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn add_is_idempotent_and_remove_keeps_others() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("info")).unwrap();
        std::fs::write(d.path().join("info/exclude"), "# comment\n*.o").unwrap();
        let lines = vec!["a.tsv".to_string(), "a.log".to_string()];
        super::add(d.path(), &lines).unwrap();
        super::add(d.path(), &lines).unwrap();
        let t = std::fs::read_to_string(d.path().join("info/exclude")).unwrap();
        assert_eq!(t, "# comment\n*.o\na.tsv\na.log\n");
        super::remove(d.path(), &lines).unwrap();
        let t = std::fs::read_to_string(d.path().join("info/exclude")).unwrap();
        assert_eq!(t, "# comment\n*.o\n");
    }
}
