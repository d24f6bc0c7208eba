//! The guard rails around a run's children (proposer, metric, guards): each runs through a
//! [`Sandboxed`] executor, which gives it a private temp dir, confines it (Landlock in
//! `enforce` mode: its tree, its temp dir, what the spec declares and, for the proposer,
//! what its own commits need in the git common dir; a PID namespace; no network for the
//! metric and guards with `network = false`), snapshots what it must not change around it
//! (`git::snapshot`), restores what it changed and records that for the loop, which makes
//! the experiment an inspector-reject naming it. The metric's and guards' side effects in
//! their tree are reverted after each of them, so they never reach the decision or taint
//! the next experiment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Result;

use crate::exec::{self, Cancel, CommandSpec, Executor, Outcome, Sandbox};
use crate::git::snapshot::{Exclusions, LiveRun, Snapshot, Touched, Watched};
use crate::git::{self, HeadState, WorkTree};
use crate::run::clean_marks;
use crate::run::journal::{ExperimentRecord, Status};
use crate::run::record::RunRecord;
use crate::run::runner::Runner;
use crate::spec::SandboxMode;
use crate::store;

/// Which child: the proposer may commit on the run's branch and keeps its network; the
/// metric and guards may write their tree only, and what they change there is reverted;
/// the setup command writes its tree too (what it makes stays: the environment) and keeps
/// its network (package managers download).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Proposer,
    Evaluator,
    Setup,
}

/// What a run's children may do, and what they did that they must not.
pub(super) struct Rails {
    rec_id: String,
    common: PathBuf,
    branch_ref: String,
    worktree_name: String,
    pub(super) mode: SandboxMode,
    writable: Vec<PathBuf>,
    /// The preset agent's own state folders: writable for the proposer.
    agent_writable: Vec<PathBuf>,
    network: bool,
    home: Option<PathBuf>,
    xdg_config: Option<PathBuf>,
    /// What children changed that they must not (restored), since the loop last looked.
    tampered: Mutex<Vec<String>>,
    /// When the last proposer started (files it hid under ignore rules are newer).
    pub(super) proposer_started: Mutex<SystemTime>,
    /// Files the proposer hid under ignore rules: removed again unless kept.
    hidden: Mutex<Vec<String>>,
    _live: LiveRun,
}

/// The mode in force for a spec's `[sandbox] mode` on this machine.
pub fn effective_mode(mode: Option<SandboxMode>) -> SandboxMode {
    match mode {
        Some(m) => m,
        None if crate::host::sandbox::landlock_abi().is_ok() => SandboxMode::Enforce,
        None => SandboxMode::Detect,
    }
}

/// What `arctl status RUN` shows of a run's sandbox.
pub fn describe(rec: &RunRecord) -> String {
    let sb = &rec.spec.spec.sandbox;
    let mode = effective_mode(sb.mode);
    let local = rec.spec.spec.executor.as_ref().is_none_or(|e| e.is_local());
    let fs = match (mode, crate::host::sandbox::landlock_abi()) {
        (SandboxMode::Enforce, Ok(abi)) => {
            let scoped = if abi >= 6 { ", signals scoped" } else { "" };
            let remote = if local { "" } else { " (proposer only: the metric and guards run on the cluster)" };
            format!("enforce: Landlock ABI {abi} (writes{scoped}){remote}; detection of what it cannot cover")
        }
        (SandboxMode::Enforce, Err(why)) => format!("enforce requested, but no Landlock: {why}"),
        (SandboxMode::Detect, _) => "detect: snapshots of the git common dir around every child, restored and rejected when touched".into(),
        (SandboxMode::Off, _) => "off".into(),
    };
    let mut parts = vec![fs, format!("processes: {}", exec::containment())];
    if !sb.writable.is_empty() {
        parts.push(format!("also writable: {}", sb.writable.join(", ")));
    }
    parts.push(if sb.network {
        "network: on".into()
    } else {
        "network: off for the metric and guards".into()
    });
    parts.join("; ")
}

impl Rails {
    pub(super) fn new(rec: &RunRecord) -> Rails {
        let sb = &rec.spec.spec.sandbox;
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let spec_dir = rec
            .spec
            .spec_file
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let writable = sb
            .writable
            .iter()
            .map(|w| expand(w, home.as_deref(), &spec_dir))
            .collect();
        // A preset agent's own state folders under $HOME (those that exist: Landlock names
        // existing paths only), for the proposer alone.
        let agent_writable = rec
            .spec
            .spec
            .proposer
            .preset
            .as_deref()
            .and_then(crate::spec::presets::find)
            .zip(home.as_deref())
            .map(|(p, h)| {
                p.home_writable
                    .iter()
                    .map(|d| h.join(d))
                    .filter(|d| d.exists())
                    .collect()
            })
            .unwrap_or_default();
        Rails {
            rec_id: rec.id.clone(),
            common: rec.common_dir.clone(),
            branch_ref: format!("refs/heads/{}", rec.branch),
            worktree_name: git::worktree_name(&rec.id),
            mode: effective_mode(sb.mode),
            writable,
            agent_writable,
            network: sb.network,
            xdg_config: std::env::var_os("XDG_CONFIG_HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            home,
            tampered: Mutex::new(Vec::new()),
            proposer_started: Mutex::new(SystemTime::now()),
            hidden: Mutex::new(Vec::new()),
            _live: LiveRun::new(&rec.common_dir, &rec.id),
        }
    }

    /// What children changed that they must not since the last call (already restored).
    pub(super) fn take_tampered(&self) -> Vec<String> {
        std::mem::take(&mut *self.tampered.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn note(&self, what: String) {
        self.tampered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    /// Where a child may write (enforce mode): its tree and temp dir, what the spec
    /// declares, and for the proposer what its own commits touch in the common dir.
    fn holes(&self, role: Role, tree: &Path, tmp: &Path) -> Vec<PathBuf> {
        let mut w = vec![
            tree.to_path_buf(),
            tmp.to_path_buf(),
            self.common.join("objects"),
        ];
        w.extend(git::admin_dir(tree));
        if role == Role::Proposer {
            if let Some(dir) = Path::new(&self.branch_ref).parent() {
                // Git writes a ref through `<ref>.lock` + rename in the ref's folder.
                w.push(self.common.join(dir));
            }
            let log = self.common.join("logs").join(&self.branch_ref);
            // Created now if missing: a new reflog would need the whole folder writable.
            if !log.exists() {
                if let Some(d) = log.parent() {
                    let _ = std::fs::create_dir_all(d);
                }
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log);
            }
            w.push(log);
            w.extend(self.agent_writable.iter().cloned());
        }
        w.extend(self.writable.iter().cloned());
        w.into_iter()
            .map(|p| p.canonicalize().unwrap_or(p))
            .collect()
    }

    fn exclusions(&self, role: Role, tree: &Path, holes: Option<&[PathBuf]>) -> Exclusions {
        let mut own = vec![self.worktree_name.clone()];
        if let Some(name) = git::admin_dir(tree)
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
        {
            own.push(name);
        }
        Exclusions {
            own_branch: if role == Role::Proposer {
                self.branch_ref.clone()
            } else {
                String::new()
            },
            own_worktrees: own,
            home: self.home.clone(),
            xdg_config: self.xdg_config.clone(),
            holes: holes.map(<[PathBuf]>::to_vec),
        }
    }

    /// After a child: what it changed of the protected files is put back and noted. In
    /// enforce mode the snapshot watched only what lies within the child's reach: a change
    /// elsewhere (the user working, another program) cannot be its doing.
    fn settle(&self, watched: Watched, who: &str) {
        watched.finish(|snap, touched| self.settle_touched(snap, touched, who));
    }

    fn settle_touched(&self, snap: &Snapshot, theirs: Vec<Touched>, who: &str) {
        if theirs.is_empty() {
            return;
        }
        // A change another child running meanwhile could also have made: undone, but held
        // against neither.
        let (shared, theirs): (Vec<Touched>, Vec<Touched>) =
            theirs.into_iter().partition(|t| snap.shared_with_others(t));
        if !shared.is_empty() {
            let _ = snap.restore(&shared);
            tracing::warn!(run = %self.rec_id, "changed while the {who} and another run's child ran, within both's reach (restored): {}", list(&shared));
        }
        if theirs.is_empty() {
            return;
        }
        let restored = match snap.restore(&theirs) {
            Ok(()) => "restored",
            Err(e) => {
                tracing::error!(run = %self.rec_id, "restoring what the {who} touched: {e:#}");
                "restore failed"
            }
        };
        self.note(format!("the {who} touched {} ({restored})", list(&theirs)));
    }
}

fn list(t: &[Touched]) -> String {
    let shown: Vec<String> = t.iter().take(6).map(Touched::to_string).collect();
    let more = if t.len() > 6 {
        format!(" and {} more", t.len() - 6)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// `~/x` in the daemon's home, relative paths in the spec's folder.
fn expand(w: &str, home: Option<&Path>, spec_dir: &Path) -> PathBuf {
    let w = w.trim();
    match (w.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ if w == "~" => home
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(w)),
        _ => spec_dir.join(w),
    }
}

/// A private temp dir for one child (0700), removed with it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> std::io::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        // SAFETY: geteuid has no preconditions.
        let base = std::env::temp_dir().join(format!("arctl-{}-work", unsafe { libc::geteuid() }));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)?;
        let clean: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = base.join(format!("{clean}-{}", rand::random::<u32>()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An executor whose every command runs inside the run's guard rails.
pub(super) struct Sandboxed {
    pub(super) inner: Arc<dyn Executor>,
    pub(super) rails: Arc<Rails>,
    pub(super) role: Role,
}

impl Sandboxed {
    fn who(&self, spec: &CommandSpec) -> String {
        match self.role {
            Role::Proposer => "proposer".into(),
            Role::Setup => "setup command".into(),
            Role::Evaluator => {
                let role = spec.tag.rsplit('/').next().unwrap_or("metric");
                if role.starts_with("guard-") {
                    format!("guard {}", role.trim_start_matches("guard-"))
                } else {
                    "metric".into()
                }
            }
        }
    }

    /// The metric's and guards' changes to their tree: reverted to its HEAD. A tree found
    /// clean after a `confined` child is marked so (`clean_marks`): the revert after a
    /// discard need not walk it again. (Of a cluster job, processes might outlive it.)
    fn revert_side_effects(&self, tree: &Path, who: &str, confined: bool) {
        let walking = confined.then(|| clean_marks::DAEMON.walk(tree)).flatten();
        let Ok(wt) = WorkTree::open(tree) else {
            return;
        };
        let head = match wt.head_state() {
            HeadState::Branch { oid, .. } | HeadState::Detached(oid) => oid,
            HeadState::Unborn => return,
        };
        let changed = match wt.changes_since(head) {
            Ok(c) if c.is_empty() => {
                if let Some(w) = walking {
                    w.clean(head);
                }
                return;
            }
            Ok(c) => {
                let shown: Vec<&str> = c.iter().take(5).map(|c| c.path.as_str()).collect();
                shown.join(", ")
            }
            // An index it overwrote, say: the restore rebuilds what it cannot read.
            Err(e) => format!("what the walk could not read ({e:#})"),
        };
        let r = match wt.head_state() {
            HeadState::Branch { name, .. } => wt.restore(&name, head),
            _ => wt.checkout_detached(head),
        };
        match r {
            Ok(()) => {
                tracing::info!(run = %self.rails.rec_id, "the {who} changed {changed} in {}: reverted", tree.display())
            }
            Err(e) => {
                tracing::warn!(run = %self.rails.rec_id, "reverting what the {who} changed in {}: {e:#}", tree.display())
            }
        }
    }
}

impl Executor for Sandboxed {
    fn run(&self, spec: &CommandSpec, cancel: &Cancel) -> std::io::Result<Outcome> {
        let rails = &self.rails;
        let who = self.who(spec);
        let off = rails.mode == SandboxMode::Off;
        let local = self.inner.is_local();
        let mut spec = spec.clone();
        let own_tmp = match spec.env.iter().find(|(k, _)| k == "TMPDIR") {
            Some((_, t)) => (None, PathBuf::from(t)),
            None => {
                let s = Scratch::new(&spec.tag)?;
                let p = s.0.clone();
                spec.env.push(("TMPDIR".into(), p.display().to_string()));
                (Some(s), p)
            }
        };
        let holes = (rails.mode == SandboxMode::Enforce && local)
            .then(|| rails.holes(self.role, &spec.cwd, &own_tmp.1));
        // Detect mode: one child at a time on the repository (a change is surely its own).
        let turn = if rails.mode == SandboxMode::Detect {
            match crate::git::snapshot::take_turn(&rails.common, || cancel.is_cancelled()) {
                Some(t) => Some(t),
                None => return Ok(Outcome::cancelled_before_start(store::now_ms())),
            }
        } else {
            None
        };
        // Where it may write, while it runs: its holes and what every command may
        // (Landlock's own list); None: anywhere (no Landlock to hold it to its holes).
        let confined = holes
            .clone()
            .filter(|_| crate::host::sandbox::landlock_abi().is_ok())
            .map(|mut h| {
                h.extend(exec::always_writable_dirs());
                h
            });
        let watched = (!off).then(|| {
            let ex = rails.exclusions(self.role, &spec.cwd, confined.as_deref());
            Watched::begin(&rails.common, ex)
        });
        if self.role == Role::Proposer {
            *rails
                .proposer_started
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = SystemTime::now();
        }
        // For the trees' clean marks: until it has ended.
        let marks_trusted = confined.is_some();
        let running = clean_marks::DAEMON.child(confined);
        let outcome = if local {
            let sandbox = Sandbox {
                writable: holes.clone(),
                isolate: true,
                network: self.role != Role::Evaluator || rails.network,
            };
            exec::run_sandboxed(&spec, &sandbox, cancel)
        } else {
            self.inner.run(&spec, cancel)
        };
        drop(running);
        if let Some(w) = watched {
            rails.settle(w, &who);
        }
        if self.role == Role::Evaluator && !off {
            self.revert_side_effects(&spec.cwd, &who, marks_trusted);
        }
        drop(own_tmp);
        drop(turn);
        outcome
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }
    fn preflight(&self, p: &exec::Preflight) -> crate::protocol::OpResult<Option<String>> {
        self.inner.preflight(p)
    }
    fn check_visible(
        &self,
        dirs: &[PathBuf],
        check: &exec::VisibilityCheck,
        cancel: &Cancel,
    ) -> Result<bool> {
        self.inner.check_visible(dirs, check, cancel)
    }
    fn limits_description(&self) -> String {
        self.inner.limits_description()
    }
    fn begin_group(&self, commands: u32) {
        self.inner.begin_group(commands)
    }
    fn end_group(&self) {
        self.inner.end_group()
    }
    fn jobs(&self) -> Vec<exec::ClusterJob> {
        self.inner.jobs()
    }
    fn recover(&self) -> std::io::Result<Vec<String>> {
        self.inner.recover()
    }
    fn shutdown(&self) {
        self.inner.shutdown()
    }
}

/// Where `arctl merge` measures a run's change again (on top of the runs merged before it):
/// its executor inside its guard rails, as its loop measured.
pub fn evaluator_for(g: &crate::run::Global, rec: &RunRecord) -> Arc<dyn Executor> {
    let rails = Arc::new(Rails::new(rec));
    wrap(g.executor(rec), &rails, Role::Evaluator)
}

/// Where `arctl merge` prepares its worktrees (`[setup]`): as the loop prepared the run's.
pub fn setup_executor_for(g: &crate::run::Global, rec: &RunRecord) -> Arc<dyn Executor> {
    let rails = Arc::new(Rails::new(rec));
    wrap(g.executor(rec), &rails, Role::Setup)
}

/// `inner` with every command inside the run's guard rails as `role`.
pub(super) fn wrap(inner: Arc<dyn Executor>, rails: &Arc<Rails>, role: Role) -> Arc<dyn Executor> {
    Arc::new(Sandboxed {
        inner,
        rails: rails.clone(),
        role,
    })
}

impl Runner {
    /// Where the proposer runs (this machine, or the cluster with `proposer_on_cluster`),
    /// inside the guard rails.
    pub(super) fn proposer_executor(&self, on_cluster: bool) -> Arc<dyn Executor> {
        let inner: Arc<dyn Executor> = if on_cluster {
            self.g.executor(&self.rec)
        } else {
            Arc::new(exec::Local)
        };
        wrap(inner, &self.rails, Role::Proposer)
    }

    /// A private temp dir for one proposer call (its description and proposal files too).
    pub(super) fn proposer_scratch(&self, experiment: u32) -> Result<ScratchDir> {
        Ok(ScratchDir(Scratch::new(&format!(
            "{}-{experiment}-proposer",
            self.rec.id
        ))?))
    }

    /// What a run's children changed that they must not, left from before this experiment
    /// (an interrupted one, the baseline): logged, not held against the next proposer.
    pub(super) fn forget_tampering(&self) {
        self.rails
            .hidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for t in self.rails.take_tampered() {
            self.log(&format!("before this experiment, {t}"));
        }
    }

    /// The guard rails' checks of a proposal: what the proposer touched outside its reach
    /// (already restored), files it hid under ignore rules it wrote (added to the changes),
    /// nested repositories and symlinks out of the worktree. `changes` are the proposal's.
    pub(super) fn inspect_proposal(
        &self,
        changes: &mut Vec<git::Change>,
    ) -> Result<Option<String>> {
        let tampered = self.rails.take_tampered();
        if !tampered.is_empty() {
            return Ok(Some(tampered.join("; ")));
        }
        if self.rails.mode == SandboxMode::Off {
            return Ok(None);
        }
        let since = *self
            .rails
            .proposer_started
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let own = [self.rec.spec.tsv_name(), self.rec.spec.log_name()];
        let hidden = self.wt.hidden_by_ignores(changes, since, &own)?;
        *self.rails.hidden.lock().unwrap_or_else(|e| e.into_inner()) =
            hidden.iter().map(|h| h.path.clone()).collect();
        for h in hidden {
            if !changes.iter().any(|c| c.path == h.path) {
                changes.push(h);
            }
        }
        let nested = self.wt.nested_repos(changes);
        if !nested.is_empty() {
            self.wt.remove_leftovers(&nested);
            return Ok(Some(format!(
                "a nested git repository or submodule in the worktree ({}): not supported, removed",
                nested.join(", ")
            )));
        }
        let links = self.wt.escaping_symlinks(changes);
        if !links.is_empty() {
            return Ok(Some(format!(
                "symlink out of the worktree: {}",
                links.join(", ")
            )));
        }
        Ok(None)
    }

    /// Right before an experiment is concluded: what the metric or guards touched outside
    /// their reach makes it an inspector-reject; a kept candidate's branch is where the run
    /// put it (another run's child cannot have moved it meanwhile).
    pub(super) fn before_conclusion(
        &self,
        status: &mut Status,
        reason: &mut String,
        commit: Option<&str>,
        changes: &[git::Change],
    ) -> Result<()> {
        let tampered = self.rails.take_tampered();
        if !tampered.is_empty() {
            *status = Status::InspectorReject;
            *reason = tampered.join("; ");
        }
        if *status != Status::Keep {
            // What the proposer added goes, whatever its name (a reset can miss odd ones)
            // and whatever hid it.
            let mut gone =
                std::mem::take(&mut *self.rails.hidden.lock().unwrap_or_else(|e| e.into_inner()));
            gone.extend(
                changes
                    .iter()
                    .filter(|c| c.kind == git::ChangeKind::Added)
                    .map(|c| c.path.clone()),
            );
            self.wt.remove_leftovers(&gone);
        }
        if *status == Status::Keep {
            if let Some(c) = commit {
                let oid = git::parse_oid(c)?;
                let refname = format!("refs/heads/{}", self.rec.branch);
                if self.wt.repo.refname_to_id(&refname).ok() != Some(oid) {
                    self.log(&format!(
                        "{refname} was moved by someone else; put back at {}",
                        git::short(oid)
                    ));
                    self.wt.set_ref(&refname, oid, "arctl: keep")?;
                }
            }
        }
        Ok(())
    }

    /// Append the experiment's line to the journal. A line the daemon did not write (an
    /// injected or damaged one) is moved to the quarantine file first, alone: the journal
    /// stays the daemon's rows. Unchanged since this runner's last append (same size and
    /// change time), it is not read back: an experiment costs one line, not the journal.
    pub(super) fn append_journal(&mut self, rec: &ExperimentRecord) -> Result<()> {
        let path = self.h.paths.journal();
        if self.journal_mark.is_none() || store::FileMark::of(&path) != self.journal_mark {
            self.check_journal(&path)?;
        }
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        self.journal_mark = Some(store::append_marked(&path, &line)?);
        Ok(())
    }

    /// The journal must hold exactly the lines of `records`: others are moved out.
    fn check_journal(&mut self, path: &Path) -> Result<()> {
        let expected = journal_text(&self.records)?;
        let have = std::fs::read(path).unwrap_or_default();
        if have != expected.as_bytes() {
            let foreign = store::foreign_lines(&have, expected.as_bytes());
            store::quarantine_lines(path, &foreign)?;
            store::write_atomic(path, expected.as_bytes())?;
            self.log(&format!(
                "the journal had {} line(s) the daemon did not write: moved to {}",
                foreign.len(),
                store::quarantine_path(path).display()
            ));
        }
        Ok(())
    }
}

/// The journal's text for these records, as the daemon writes it.
fn journal_text(records: &[ExperimentRecord]) -> Result<String> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    Ok(text)
}

/// A proposer's private temp dir (removed when dropped).
pub(super) struct ScratchDir(Scratch);

impl ScratchDir {
    pub(super) fn path(&self) -> &Path {
        &self.0 .0
    }
}
