//! Creating a run: resolve the spec (parsed once, checked against this host, its executor
//! fixed), let the executor check what it can before anything exists, validate against the
//! repo and the other runs, then create the branch, worktree, exclude lines and state
//! folder, all or nothing.

use std::path::{Path, PathBuf};

use crate::exec::{self, Preflight};
use crate::git::{self, scope};
use crate::protocol::{Error, OpResult};
use crate::run::record::{Origin, RunPaths, RunRecord};
use crate::run::Global;
use crate::spec::{self, ResolvedSpec, ScopeSpec};
use crate::store;

/// An active run, as the overlap check sees it.
pub struct ActiveScope {
    pub id: String,
    pub repo: PathBuf,
    pub scope: ScopeSpec,
}

/// The spec of a new run: parsed, checked against this host, with its executor and its
/// notifications fixed (the spec's, else the daemon's defaults).
pub fn resolve(g: &Global, spec_path: &Path, spec_text: &str) -> OpResult<ResolvedSpec> {
    let bad = |e: spec::SpecError| Error::bad_input(e.to_string());
    let mut resolved =
        spec::parse_for_host(spec_text, spec_path, &crate::host::facts()).map_err(bad)?;
    if resolved.spec.executor.is_none() {
        resolved.spec.executor = g.default_executor.clone();
    }
    if resolved.spec.notify.is_none() {
        resolved.spec.notify = g.default_notify.clone();
    }
    Ok(resolved)
}

/// What can be checked of a spec against its repository without creating anything: the
/// repo exists, has a work tree and a commit, the base exists (Err otherwise); and the
/// warnings: the scope's ([`scope::warnings`]) and a missing git identity.
pub fn check_repo(resolved: &ResolvedSpec) -> OpResult<Vec<String>> {
    let file = resolved.spec_file.display();
    let (repo, _) =
        git::open_repo(&resolved.repo).map_err(|e| Error::bad_input(format!("{file}: {e:#}")))?;
    git::resolve_base(&repo, resolved.spec.base.as_deref())
        .map_err(|e| Error::bad_input(format!("{file}: {e:#}")))?;
    Ok(scope_warnings(&repo, resolved))
}

fn scope_warnings(repo: &git2::Repository, resolved: &ResolvedSpec) -> Vec<String> {
    let s = &resolved.spec;
    let mut commands = vec![("metric.command".to_string(), s.metric.command.clone())];
    commands.extend(
        s.guards
            .iter()
            .map(|g| (format!("guard {:?}", g.name), g.command.clone())),
    );
    let mut out = scope::warnings(&s.scope, &git::tracked_files(repo), &commands);
    out.extend(git::identity_note(repo));
    out
}

/// The executor's checks before anything is created (a cluster: its commands, its
/// partition, and a short job that must see the repository, the worktrees' folder and the
/// state dir). Ok(Some(note)): something for the run's log.
pub fn preflight(g: &Global, resolved: &ResolvedSpec) -> OpResult<Option<String>> {
    let Some(e) = resolved.spec.executor.as_ref().filter(|e| !e.is_local()) else {
        return Ok(None);
    };
    let Ok((_, info)) = git::open_repo(&resolved.repo) else {
        return Ok(None); // `create` says what is wrong with the repo
    };
    let id = resolved.id.to_string();
    let worktree = git::worktree_path(&info.root, &id);
    let mut dirs: Vec<PathBuf> = vec![info.root.clone()];
    dirs.extend(worktree.parent().map(Path::to_path_buf));
    dirs.push(g.state_dir.clone());
    let limits = &resolved.spec.limits;
    let tag = g.run_tag(&id);
    // Not the run's executor (the run does not exist yet): no ledger, nothing kept.
    let executor = exec::executor_for(
        Some(e),
        exec::executor::ExecutorOptions {
            cpus: limits.cpus,
            ledger: None,
            name_prefix: tag.clone(),
        },
    );
    executor.preflight(&Preflight {
        cpus: limits.cpus,
        memory: limits.memory.map(|m| m.0),
        dirs,
        tag,
    })
}

/// Create the run: refuse a taken id, a bad repo or base, a scope overlapping an active
/// run's, a worktree or branch in the way; then create everything or nothing. Returns the
/// record and the scope's warnings.
pub fn create(
    g: &Global,
    resolved: ResolvedSpec,
    spec_text: &str,
    active: &[ActiveScope],
) -> OpResult<(RunRecord, Vec<String>)> {
    let spec_path = resolved.spec_file.clone();
    let bad = |m: String| Error::bad_input(m);
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
    check_overlap(&repo, &info.root, &resolved, active)?;
    let warnings = scope_warnings(&repo, &resolved);
    let branch = git::names::branch(&id);
    let worktree = git::worktree_path(&info.root, &id);
    git::check_worktree_free(&repo, &id, &branch, &worktree).map_err(|e| bad(format!("{e:#}")))?;
    let local = resolved.spec.executor.as_ref().is_none_or(|e| e.is_local());
    // Dedicated cores (this machine's): reserved now, released again if anything below fails.
    let cores = CoreReservation::new(g, &id, resolved.spec.limits.cpus.filter(|_| local))?;
    let excludes = vec![resolved.tsv_name(), resolved.log_name()];
    let record = RunRecord::new(
        Origin {
            id: id.clone(),
            spec: resolved,
            repo: info.root.clone(),
            common_dir: info.common_dir.clone(),
            worktree: worktree.clone(),
            branch,
            base,
            base_commit: base_oid.to_string(),
        },
        store::now_ms(),
    );
    materialize(g, &repo, &record, spec_text, &excludes)?;
    cores.keep();
    Ok((record, warnings))
}

/// Two active runs on one repository must not be able to edit the same file.
fn check_overlap(
    repo: &git2::Repository,
    root: &Path,
    resolved: &ResolvedSpec,
    active: &[ActiveScope],
) -> OpResult<()> {
    let others: Vec<&ActiveScope> = active.iter().filter(|a| a.repo == root).collect();
    if others.is_empty() {
        return Ok(());
    }
    let tracked = git::tracked_files(repo);
    for other in others {
        if let Some(examples) = scope::overlap(&resolved.spec.scope, &other.scope, &tracked) {
            return Err(Error::bad_input(format!(
                "scope of {:?} overlaps the scope of active run {:?} on {}: both would edit {}; make the `include` globs disjoint",
                resolved.id.to_string(),
                other.id,
                root.display(),
                examples.join(", ")
            )));
        }
    }
    Ok(())
}

/// Write the state folder (under a temporary name, renamed at the end: a crash leaves no
/// half-made run), the exclude lines and the worktree; on failure undo what was done.
fn materialize(
    g: &Global,
    repo: &git2::Repository,
    record: &RunRecord,
    spec_text: &str,
    excludes: &[String],
) -> OpResult<()> {
    let fail = |m: String| Error::failed(m);
    let runs = g.state_dir.join("runs");
    let tmp = runs.join(format!(".{}.creating", record.id));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("output"))
        .map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
    let undo_tmp = || {
        let _ = std::fs::remove_dir_all(&tmp);
    };
    let tmp_paths = RunPaths { dir: tmp.clone() };
    if let Err(e) = std::fs::write(tmp_paths.spec(), spec_text)
        .map_err(anyhow::Error::from)
        .and_then(|_| store::save_json(&tmp_paths.record(), record))
    {
        undo_tmp();
        return Err(fail(format!("writing the run's state: {e:#}")));
    }
    // The exclude lines (written durably) before the checkout: an fsync right after
    // writing a big tree makes ext4 commit the whole checkout's metadata first (seconds at
    // 100,000 files), which `git worktree add` never waits for.
    if let Err(e) = git::exclude::add(&record.common_dir, excludes) {
        undo_tmp();
        return Err(fail(format!("{e:#}")));
    }
    let base_oid = git::parse_oid(&record.base_commit).map_err(Error::from_anyhow)?;
    if let Err(e) =
        git::create_worktree(repo, &record.id, &record.branch, base_oid, &record.worktree)
    {
        let _ = git::exclude::remove(&record.common_dir, excludes);
        undo_tmp();
        return Err(fail(format!("{e:#}")));
    }
    let paths = RunPaths::new(&g.state_dir, &record.id);
    if let Err(e) = std::fs::rename(&tmp, &paths.dir) {
        let _ = git::remove_worktree(repo, &git::worktree_name(&record.id), &record.worktree);
        if let Ok(mut b) = repo.find_branch(&record.branch, git2::BranchType::Local) {
            let _ = b.delete();
        }
        let _ = git::exclude::remove(&record.common_dir, excludes);
        undo_tmp();
        return Err(fail(format!("{e:#}")));
    }
    Ok(())
}

/// Cores reserved for a run being created; released on drop unless kept.
struct CoreReservation<'a> {
    g: &'a Global,
    id: String,
    keep: bool,
}

impl<'a> CoreReservation<'a> {
    fn new(g: &'a Global, id: &str, n: Option<u32>) -> OpResult<CoreReservation<'a>> {
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
