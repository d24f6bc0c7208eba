//! Creating a run: validate the spec against the repo and the other runs, then create the
//! branch, worktree, exclude lines and state folder, all or nothing.

use std::path::{Path, PathBuf};

use crate::git::{self, scope};
use crate::run::cluster;
use crate::run::record::{RunPaths, RunRecord, RunState};
use crate::run::Global;
use crate::spec::{self, ScopeSpec};
use crate::store;

/// Why a run could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The user's input is wrong (spec, id taken, overlap, bad base): exit 2.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Failed(String),
}

/// An active run, as the overlap check sees it.
pub struct ActiveScope {
    pub id: String,
    pub repo: PathBuf,
    pub scope: ScopeSpec,
}

pub fn create(
    g: &Global,
    spec_path: &Path,
    spec_text: &str,
    active: &[ActiveScope],
) -> Result<RunRecord, SetupError> {
    let bad = |m: String| SetupError::BadInput(m);
    let resolved = spec::parse(spec_text, spec_path).map_err(|e| bad(e.to_string()))?;
    let facts = spec::HostFacts {
        instructions: crate::exec::instructions_supported(),
    };
    spec::check_host(&resolved, spec_text, &facts).map_err(|e| bad(e.to_string()))?;
    let id = resolved.id.to_string();
    let paths = RunPaths::new(&g.state_dir, &id);
    if paths.dir.exists() {
        return Err(bad(format!(
            "run id {id:?} is taken: a run with this id exists in {} (see `arctl status {id}`); set another `id` in {}",
            paths.dir.display(),
            spec_path.display()
        )));
    }
    let (repo, info) = git::open_repo(&resolved.repo)
        .map_err(|e| bad(format!("{}: {e:#}", spec_path.display())))?;
    let (base, base_oid) = git::resolve_base(&repo, resolved.spec.base.as_deref())
        .map_err(|e| bad(format!("{}: {e:#}", spec_path.display())))?;

    for other in active.iter().filter(|a| a.repo == info.root) {
        let tracked = tracked_files(&repo);
        if let Some(examples) = scope::overlap(&resolved.spec.scope, &other.scope, &tracked) {
            return Err(bad(format!(
                "scope of {id:?} overlaps the scope of active run {:?} on {}: both would edit {}; make the `include` globs disjoint",
                other.id,
                info.root.display(),
                examples.join(", ")
            )));
        }
    }
    let branch = resolved.branch();
    let worktree = git::worktree_path(&info.root, &id);
    git::check_worktree_free(&repo, &id, &branch, &worktree).map_err(|e| bad(format!("{e:#}")))?;
    // The executor is fixed now: the spec's, else the daemon's default.
    let mut resolved = resolved;
    resolved.spec.executor = cluster::effective(&resolved.spec, g.default_executor.as_ref());
    let local = resolved.spec.executor.as_ref().is_none_or(|e| e.is_local());
    // Dedicated cores (this machine's): reserved now, released again if anything below fails.
    let cores =
        CoreReservation::new(g, &id, resolved.spec.limits.cpus.filter(|_| local)).map_err(bad)?;

    // Build the state folder under a temporary name, then rename: a crash leaves no
    // half-made run behind.
    let runs = g.state_dir.join("runs");
    let tmp = runs.join(format!(".{id}.creating"));
    let _ = std::fs::remove_dir_all(&tmp);
    let fail = |m: String| SetupError::Failed(m);
    std::fs::create_dir_all(tmp.join("output"))
        .map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
    let record = RunRecord {
        id: id.clone(),
        spec: resolved.clone(),
        repo: info.root.clone(),
        common_dir: info.common_dir.clone(),
        worktree: worktree.clone(),
        branch: branch.clone(),
        base,
        base_commit: base_oid.to_string(),
        created_at_ms: store::now_ms(),
        state: RunState::Starting,
        stop_reason: None,
        error: None,
        best_commit: base_oid.to_string(),
        baseline: None,
        best: None,
        baseline_duration_ms: None,
        mode: None,
        next_experiment: 0,
        counts: Default::default(),
        inflight: None,
        active_ms: 0,
        recovered_at_ms: None,
        last_status: None,
        merged: false,
        cleaned_up: false,
    };
    let undo_tmp = || {
        let _ = std::fs::remove_dir_all(&tmp);
    };
    let tmp_paths = RunPaths { dir: tmp.clone() };
    if let Err(e) = std::fs::write(tmp_paths.spec(), spec_text)
        .map_err(anyhow::Error::from)
        .and_then(|_| store::save_json(&tmp_paths.record(), &record))
    {
        undo_tmp();
        return Err(fail(format!("writing the run's state: {e:#}")));
    }
    // The exclude lines (written durably) before the checkout: an fsync right after
    // writing a big tree makes ext4 commit the whole checkout's metadata first (seconds at
    // 100,000 files), which `git worktree add` never waits for.
    let excludes = vec![resolved.tsv_name(), resolved.log_name()];
    if let Err(e) = git::exclude::add(&info.common_dir, &excludes) {
        undo_tmp();
        return Err(fail(format!("{e:#}")));
    }
    if let Err(e) = git::create_worktree(&repo, &id, &branch, base_oid, &worktree) {
        let _ = git::exclude::remove(&info.common_dir, &excludes);
        undo_tmp();
        return Err(fail(format!("{e:#}")));
    }
    if let Err(e) = std::fs::rename(&tmp, &paths.dir) {
        let _ = git::remove_worktree(&repo, &git::worktree_name(&id), &worktree);
        if let Ok(mut b) = repo.find_branch(&branch, git2::BranchType::Local) {
            let _ = b.delete();
        }
        let _ = git::exclude::remove(&info.common_dir, &excludes);
        undo_tmp();
        return Err(fail(format!("{e:#}")));
    }
    cores.keep();
    Ok(record)
}

/// For a spec (or daemon default) that runs commands on a cluster: the checks that must pass
/// before anything is created (see [`cluster::check_start`]); Err is bad input (exit 2).
/// Ok(Some(note)): something for the run's log.
pub fn check_executor(
    g: &Global,
    spec_path: &Path,
    spec_text: &str,
) -> Result<Option<String>, String> {
    cluster::check_start(g, spec_path, spec_text)
}

/// Cores reserved for a run being created; released on drop unless kept.
struct CoreReservation<'a> {
    g: &'a Global,
    id: String,
    keep: bool,
}

impl<'a> CoreReservation<'a> {
    fn new(g: &'a Global, id: &str, n: Option<u32>) -> Result<CoreReservation<'a>, String> {
        if let Some(n) = n {
            g.reserve_cores(id, n as usize)?;
        }
        Ok(CoreReservation {
            g,
            id: id.to_string(),
            keep: n.is_none(),
        })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for CoreReservation<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.g.release_cores(&self.id);
        }
    }
}

/// Paths of the files the repo's index tracks.
pub fn tracked_files(repo: &git2::Repository) -> Vec<String> {
    repo.index()
        .map(|idx| {
            idx.iter()
                .map(|e| String::from_utf8_lossy(&e.path).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Remove what a creation interrupted by a crash left: its worktree, branch (if it never
/// moved), exclude lines and the temporary state folder.
pub fn undo_interrupted(tmp: &Path) {
    if let Ok(rec) = store::load_json::<RunRecord>(&tmp.join("run.json")) {
        if let Ok((repo, _)) = git::open_repo(&rec.repo) {
            let _ = git::remove_worktree(&repo, &git::worktree_name(&rec.id), &rec.worktree);
            if let Ok(mut b) = repo.find_branch(&rec.branch, git2::BranchType::Local) {
                if b.get().target().map(|t| t.to_string()) == Some(rec.base_commit.clone()) {
                    let _ = b.delete();
                }
            }
            let _ =
                git::exclude::remove(&rec.common_dir, &[rec.spec.tsv_name(), rec.spec.log_name()]);
        }
        tracing::info!(run = %rec.id, "removed a run whose creation was interrupted");
    }
    let _ = std::fs::remove_dir_all(tmp);
}
