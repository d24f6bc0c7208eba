//! Where things live (socket, state dir, daemon config) and the daemon's own settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The daemon's settings: paths from the command line, the rest from its TOML config file.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub settings: Settings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Experiments executing at once across all runs; the rest wait in start order.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: usize,
    /// Resume recovered runs after a restart (false: they come back paused).
    #[serde(default = "default_true")]
    pub resume: bool,
    /// Where runs whose spec has no `[executor]` run commands (default: this machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<crate::spec::ExecutorSpec>,
    /// Notification commands of runs whose spec has no `[notify]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<crate::spec::NotifySpec>,
}

fn default_max_parallel() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}
fn default_true() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_parallel: default_max_parallel(),
            resume: true,
            executor: None,
            notify: None,
        }
    }
}

impl Settings {
    /// Read the daemon config file; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let s: Settings = toml::from_str(&text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((1, 1));
            anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message().trim())
        })?;
        if s.max_parallel == 0 {
            anyhow::bail!("{}: max_parallel must be at least 1", path.display());
        }
        if let Some((_, msg)) = s.executor.as_ref().and_then(|e| e.problem()) {
            anyhow::bail!("{}: {msg}", path.display());
        }
        Ok(s)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> PathBuf {
    env_path("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

/// `$XDG_RUNTIME_DIR/arctl/arctl.sock`, else `/tmp/arctl-$UID/arctl.sock`.
pub fn default_socket() -> PathBuf {
    match env_path("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("arctl").join("arctl.sock"),
        None => PathBuf::from(format!("/tmp/arctl-{}", nix::unistd::getuid())).join("arctl.sock"),
    }
}

/// `$XDG_STATE_HOME/arctl`, else `~/.local/state/arctl`.
pub fn default_state_dir() -> PathBuf {
    match env_path("XDG_STATE_HOME") {
        Some(dir) => dir.join("arctl"),
        None => home().join(".local").join("state").join("arctl"),
    }
}

/// `$XDG_CONFIG_HOME/arctl/daemon.toml`, else `~/.config/arctl/daemon.toml`.
pub fn default_config_file() -> PathBuf {
    match env_path("XDG_CONFIG_HOME") {
        Some(dir) => dir.join("arctl").join("daemon.toml"),
        None => home().join(".config").join("arctl").join("daemon.toml"),
    }
}

/// Create a folder readable by its owner only (existing folders are left as they are).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("daemon.toml");
        assert_eq!(Settings::load(&p).unwrap(), Settings::default());
        std::fs::write(&p, "max_parallel = 3\nresume = false\n").unwrap();
        let s = Settings::load(&p).unwrap();
        assert_eq!((s.max_parallel, s.resume), (3, false));
        std::fs::write(&p, "[executor]\nkind = \"slurm\"\npartition = \"gpu\"\n").unwrap();
        let s = Settings::load(&p).unwrap();
        assert_eq!(s.executor.unwrap().partition.as_deref(), Some("gpu"));
        std::fs::write(&p, "[executor]\naccount = \"lab\"\n").unwrap();
        let e = Settings::load(&p).unwrap_err().to_string();
        assert!(e.contains("only used by kind = \"slurm\""), "{e}");
        std::fs::write(&p, "max_paralel = 3\n").unwrap();
        let e = Settings::load(&p).unwrap_err().to_string();
        assert!(e.contains(":1:1:") && e.contains("unknown field"), "{e}");
    }
}
