//! What a child of a run must not change in the git common dir (and in the user's global
//! git config), snapshotted around every child: every ref but the run's own branch (and
//! the refs of the other runs this daemon is running, which guard themselves),
//! `packed-refs`, `config`, `hooks/`, `info/`, the main checkout's `HEAD` and index, the
//! other worktrees' `HEAD`s. After the child, [`Snapshot::compare`] says what changed and
//! [`Snapshot::restore`] puts it back exactly.
//!
//! arctl itself changes some of these while other runs' children run (a run's creation
//! adds exclude lines and a worktree, `merge` moves the target branch, `cleanup` deletes
//! branches and worktrees): those writes go through [`own_write`], which updates every
//! snapshot in flight on that repository, so arctl's own changes are never taken for a
//! child's. Snapshots are taken and compared under the same lock, so no comparison sees
//! such a write half done. Lock and temporary files (`*.lock`, `.*.tmp.*`) are never
//! watched: they come and go with every write.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use anyhow::{Context, Result};

/// One protected file as it was: its bytes and mode, or a symlink's target.
#[derive(Debug, Clone, Eq)]
enum Item {
    File { bytes: Arc<[u8]>, mode: u32 },
    Link(PathBuf),
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        match (self, other) {
            (Item::File { bytes: a, mode: m }, Item::File { bytes: b, mode: n }) => {
                m == n && (Arc::ptr_eq(a, b) || a == b)
            }
            (Item::Link(a), Item::Link(b)) => a == b,
            _ => false,
        }
    }
}

/// What an index entry says of its file: path, mode, blob id, stage (not the stat cache).
type IndexEntry = (Vec<u8>, u32, git2::Oid, u16);

/// What the snapshot of one child leaves out, besides arctl's own temporary names.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    /// The run's own branch (`refs/heads/...`): its proposer may commit.
    pub own_branch: String,
    /// The name of the run's worktree under `worktrees/`, and of the tree the child runs
    /// in (the run's best tree for a metric there): theirs to change.
    pub own_worktrees: Vec<String>,
    /// The user's home and XDG config folder: their git config and ignore files are
    /// watched too (None: not watched).
    pub home: Option<PathBuf>,
    pub xdg_config: Option<PathBuf>,
    /// Where the child may write (its Landlock holes and the folders every command may
    /// write), canonical; None: anywhere (detect mode). With Some, only the protected
    /// files within this reach are watched: a change elsewhere cannot be the child's.
    pub holes: Option<Vec<PathBuf>>,
}

/// A change a child made to a protected file: its path (relative to the common dir, or
/// absolute outside it) and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub path: PathBuf,
    pub what: &'static str,
}

impl std::fmt::Display for Touched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.what)
    }
}

/// The protected files of one repository at one moment.
#[derive(Debug)]
pub struct Snapshot {
    common: PathBuf,
    /// `common`, canonical: what the holes are compared with.
    canonical: PathBuf,
    /// The whole common dir lies within the child's reach (always without holes).
    common_in_reach: bool,
    /// The holes inside the common dir, spelled under `common` as the walk's paths are.
    reach_in_common: Vec<PathBuf>,
    ex: Exclusions,
    files: BTreeMap<PathBuf, Item>,
    dirs: BTreeSet<PathBuf>,
    /// Worktrees whose own run had a child while this one ran: their HEAD was theirs to
    /// change, not this child's.
    overlapped: HashSet<String>,
    /// Where the other children that ran at the same time on the repository could write: a
    /// change there may be theirs.
    others_holes: Vec<PathBuf>,
    /// The runs live on the repository when the snapshot was taken (and, for the one
    /// taken after the child, those live before it): their refs stay left out even if a
    /// run ends before the child does.
    live: HashSet<String>,
}

/// Folders under the common dir whose every file is protected (new files included).
const TREES: [&str; 3] = ["refs", "hooks", "info"];
/// Single files under the common dir.
const FILES: [&str; 5] = ["packed-refs", "config", "config.worktree", "HEAD", "index"];

impl Snapshot {
    /// Read the protected files of the repository whose common dir is `common`.
    pub fn take(common: &Path, ex: Exclusions) -> Snapshot {
        let canonical = key(common);
        let holes = ex.holes.as_deref();
        let common_in_reach = holes.is_none_or(|h| h.iter().any(|r| under(&canonical, r)));
        let reach_in_common = holes
            .into_iter()
            .flatten()
            .filter_map(|r| Some(common.join(rel_of(r, &canonical)?)))
            .collect();
        let mut s = Snapshot {
            common: common.to_path_buf(),
            live: live_runs(&canonical).into_iter().collect(),
            canonical,
            common_in_reach,
            reach_in_common,
            ex,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            overlapped: HashSet::new(),
            others_holes: Vec::new(),
        };
        for t in TREES {
            s.walk(&common.join(t));
        }
        for f in FILES {
            s.read_into(&common.join(f));
        }
        if let Ok(rd) = std::fs::read_dir(common.join("worktrees")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !s.skip_worktree(&name) {
                    s.read_into(&e.path().join("HEAD"));
                }
            }
        }
        for p in s.outside_files() {
            s.read_into(&p);
        }
        s
    }

    /// The user's global git files a planted filter or ignore rule would act through.
    fn outside_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(h) = &self.ex.home {
            out.push(h.join(".gitconfig"));
        }
        let xdg = self
            .ex
            .xdg_config
            .clone()
            .or_else(|| self.ex.home.as_ref().map(|h| h.join(".config")));
        if let Some(x) = xdg {
            for f in ["config", "ignore", "attributes"] {
                out.push(x.join("git").join(f));
            }
        }
        out
    }

    fn skip_worktree(&self, name: &str) -> bool {
        self.ex.own_worktrees.iter().any(|w| w == name)
            || name.starts_with("arctl-best-")
            || name.starts_with("arctl-merge-")
            || self.overlapped.contains(name)
    }

    /// Refs arctl manages for runs: this run's branch, the other live runs' branches and
    /// refs (they guard them themselves), the temporary branches of arctl's second trees.
    fn skip_ref(&self, rel: &str) -> bool {
        if rel == self.ex.own_branch || rel.starts_with("refs/heads/arctl-tmp/") {
            return true;
        }
        let id = match (
            rel.strip_prefix("refs/heads/autoresearch/"),
            rel.strip_prefix("refs/autoresearch/"),
        ) {
            (Some(branch), _) => branch,
            (_, Some(refs)) => match refs.split_once('/') {
                Some((id, _)) => id,
                None => return false,
            },
            _ => return false,
        };
        let own_id = self.ex.own_branch.strip_prefix("refs/heads/autoresearch/");
        Some(id) != own_id && self.live.contains(id)
    }

    /// Whether `p` (under the common dir, or absolute outside it) is within the child's
    /// reach: anywhere without holes; else under one of them.
    fn in_reach(&self, p: &Path) -> bool {
        let Some(reach) = &self.ex.holes else {
            return true;
        };
        match rel_of(p, &self.common) {
            Some(_) => self.common_in_reach || self.reach_in_common.iter().any(|r| under(p, r)),
            None => reach.iter().any(|r| under(p, r)),
        }
    }

    /// Whether a walk must enter `dir`: it lies within the child's reach, or holds part
    /// of it.
    fn reach_meets(&self, dir: &Path) -> bool {
        let Some(reach) = &self.ex.holes else {
            return true;
        };
        let meets = |r: &PathBuf| under(dir, r) || under(r, dir);
        match rel_of(dir, &self.common) {
            Some(_) => self.common_in_reach || self.reach_in_common.iter().any(meets),
            None => reach.iter().any(meets),
        }
    }

    /// `p` with the common dir's part canonical, as holes are.
    fn canonical_of(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(&self.common) {
            Ok(rel) => self.canonical.join(rel),
            Err(_) => p.to_path_buf(),
        }
    }

    fn rel<'p>(&self, p: &'p Path) -> Option<Cow<'p, str>> {
        rel_of(p, &self.common).map(|r| r.to_string_lossy())
    }

    fn skipped(&self, p: &Path) -> bool {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".lock")
            || name.ends_with(".arctl-lock")
            || name.ends_with(".arctl-restore")
            || (name.starts_with('.') && name.contains(".tmp."))
            || !self.in_reach(p)
        {
            return true;
        }
        match self.rel(p) {
            Some(r) if r.starts_with("refs/") => self.skip_ref(&r),
            _ => false,
        }
    }

    fn walk(&mut self, dir: &Path) {
        if !self.reach_meets(dir) {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        self.dirs.insert(dir.to_path_buf());
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => self.walk(&p),
                Ok(_) => self.read_into(&p),
                Err(_) => {}
            }
        }
    }

    fn read_into(&mut self, p: &Path) {
        if self.skipped(p) {
            return;
        }
        if let Some(item) = read_item(p) {
            self.files.insert(p.to_path_buf(), item);
        }
    }

    /// What differs between this snapshot (before the child) and the files now.
    pub fn compare(&self) -> Vec<Touched> {
        let mut now = Snapshot::take(&self.common, self.ex.clone());
        now.overlapped = self.overlapped.clone();
        now.live.extend(self.live.iter().cloned());
        let mut out = Vec::new();
        for (p, before) in &self.files {
            if now.skipped(p) || self.overlapped_path(p) {
                continue;
            }
            match now.files.get(p) {
                None => out.push(self.touched(p, "deleted")),
                Some(after) if after == before => {}
                // The main index's entries (path, mode, id, stage), parsed only when its
                // bytes differ: a stat-only refresh by `git status` is no change.
                Some(Item::File { bytes: after, .. })
                    if p == &self.common.join("index") && same_entries(before, after) => {}
                Some(_) => out.push(self.touched(p, "changed")),
            }
        }
        for p in now.files.keys() {
            if !self.files.contains_key(p) && !now.skipped(p) && !self.overlapped_path(p) {
                out.push(self.touched(p, "created"));
            }
        }
        out
    }

    fn overlapped_path(&self, p: &Path) -> bool {
        if self.overlapped.is_empty() {
            return false;
        }
        self.rel(p).is_some_and(|r| {
            r.strip_prefix("worktrees/")
                .is_some_and(|w| self.overlapped.contains(w.split('/').next().unwrap_or("")))
        })
    }

    fn touched(&self, p: &Path, what: &'static str) -> Touched {
        Touched {
            path: p
                .strip_prefix(&self.common)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.to_path_buf()),
            what,
        }
    }

    fn abs(&self, t: &Touched) -> PathBuf {
        if t.path.is_absolute() {
            t.path.clone()
        } else {
            self.common.join(&t.path)
        }
    }

    /// Put back what `touched` names as it was: rewrite changed and deleted files, remove
    /// created ones (and the folders created for them).
    pub fn restore(&self, touched: &[Touched]) -> Result<()> {
        for t in touched {
            let p = self.abs(t);
            match self.files.get(&p) {
                Some(item) => {
                    write_item(&p, item).with_context(|| format!("restoring {}", p.display()))?
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                    let mut dir = p.parent();
                    while let Some(d) = dir {
                        if self.dirs.contains(d) || std::fs::remove_dir(d).is_err() {
                            break;
                        }
                        dir = d.parent();
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether another child running at the same time could have made this change too.
    pub fn shared_with_others(&self, t: &Touched) -> bool {
        let p = self.canonical_of(&self.abs(t));
        self.others_holes.iter().any(|r| p.starts_with(r))
    }

    /// Re-read `rel` (relative to the common dir): arctl itself just changed it.
    fn absorb_path(&mut self, rel: &Path) {
        let p = self.common.join(rel);
        self.files.remove(&p);
        if p.is_dir() {
            let keys: Vec<PathBuf> = self
                .files
                .keys()
                .filter(|k| k.starts_with(&p))
                .cloned()
                .collect();
            for k in keys {
                self.files.remove(&k);
            }
            self.walk(&p);
        } else {
            self.read_into(&p);
            if let Some(d) = p.parent() {
                let mut d = d.to_path_buf();
                while d.starts_with(&self.common) && d != self.common && self.dirs.insert(d.clone())
                {
                    d.pop();
                }
            }
        }
    }
}

/// `p` is `dir` or lies below it. Compared as bytes: `Path::starts_with` goes component by
/// component at several times the cost, and every snapshot asks it of every protected
/// file (the reach checks were a quarter of a small repo's loop in the daemon). Paths with
/// `.`, `..` or doubled separators, which arctl does not build, take `Path`'s way.
fn under(p: &Path, dir: &Path) -> bool {
    let (pb, db) = (p.as_os_str().as_bytes(), dir.as_os_str().as_bytes());
    if odd(pb) || odd(db) {
        return p.starts_with(dir);
    }
    let db = db.strip_suffix(b"/").unwrap_or(db);
    pb.starts_with(db) && (pb.len() == db.len() || pb[db.len()] == b'/')
}

/// `p` relative to `base`, if it lies below (or is) it.
fn rel_of<'p>(p: &'p Path, base: &Path) -> Option<&'p Path> {
    let (pb, db) = (p.as_os_str().as_bytes(), base.as_os_str().as_bytes());
    if odd(pb) || odd(db) {
        return p.strip_prefix(base).ok();
    }
    if !under(p, base) {
        return None;
    }
    let rest = &pb[db.strip_suffix(b"/").unwrap_or(db).len()..];
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    Some(Path::new(std::ffi::OsStr::from_bytes(rest)))
}

/// A path whose bytes and components could disagree on a prefix.
fn odd(b: &[u8]) -> bool {
    b.is_empty()
        || b.ends_with(b"/.")
        || b.ends_with(b"/..")
        || b.starts_with(b"./")
        || b.starts_with(b"../")
        || b == b"."
        || b == b".."
        || b.windows(2).any(|w| w == b"//")
        || b.windows(3).any(|w| w == b"/./")
        || b.windows(4).any(|w| w == b"/../")
}

fn read_item(p: &Path) -> Option<Item> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(p).ok()?;
    if md.file_type().is_symlink() {
        return std::fs::read_link(p).ok().map(Item::Link);
    }
    if !md.is_file() {
        return None;
    }
    let mode = md.permissions().mode() & 0o7777;
    let bytes = file_cache::read(p, &md)?;
    Some(Item::File { bytes, mode })
}

/// The bytes of protected files (the main checkout's index among them: ~0.9 MB at 10,000
/// files; read twice around every child), kept while their stat data stays the same. A change
/// moves the change time, which no unprivileged process can set back; a file changed in
/// the last 200 ms is read again every time (the change time's tick could hide a second
/// write within it).
mod file_cache {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, OnceLock};

    /// At most this many files are kept (the protected files of the repositories in use:
    /// refs, hooks, config, the main index).
    const MAX: usize = 4096;
    /// How long ago a file must have changed to be kept: longer than the coarsest
    /// timestamp tick (a jiffy), so that a later change cannot carry the same change time.
    const SETTLED: std::time::Duration = std::time::Duration::from_millis(200);

    type Key = (u64, u64, u64, i64, i64, i64, i64);

    /// Path → its stat data when read, and its bytes.
    type Cache = HashMap<PathBuf, (Key, Arc<[u8]>)>;

    fn cache() -> &'static Mutex<Cache> {
        static C: OnceLock<Mutex<Cache>> = OnceLock::new();
        C.get_or_init(Default::default)
    }

    pub(super) fn read(p: &Path, md: &std::fs::Metadata) -> Option<Arc<[u8]>> {
        let key = (
            md.dev(),
            md.ino(),
            md.len(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec(),
        );
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, bytes)) = c.get(p) {
            if *k == key {
                return Some(bytes.clone());
            }
        }
        let bytes: Arc<[u8]> = Arc::from(std::fs::read(p).ok()?);
        // Read again: it must not have changed while it was read.
        let after = std::fs::symlink_metadata(p).ok()?;
        let changed = std::time::Duration::new(md.ctime().max(0) as u64, md.ctime_nsec() as u32);
        let settled = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .is_ok_and(|now| now > changed + SETTLED);
        if settled && (after.ino(), after.ctime(), after.ctime_nsec()) == (key.1, key.5, key.6) {
            if c.len() >= MAX {
                c.clear();
            }
            c.insert(p.to_path_buf(), (key, bytes.clone()));
        } else {
            c.remove(p);
        }
        Some(bytes)
    }
}

fn write_item(p: &Path, item: &Item) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(p)?;
    }
    match item {
        Item::File { bytes, mode } => {
            let tmp = p.with_file_name(format!(
                ".{}.arctl-restore",
                p.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::write(&tmp, bytes)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))?;
            std::fs::rename(&tmp, p)
        }
        Item::Link(target) => {
            let _ = std::fs::remove_file(p);
            std::os::unix::fs::symlink(target, p)
        }
    }
}

/// Do an index as it was (`before`) and as it is (`after`, its bytes) hold the same
/// entries? libgit2 reads an index only from a file: `after` is written to a private temp
/// file (this happens only when the index's bytes changed, which is rare).
fn same_entries(before: &Item, after: &[u8]) -> bool {
    let Item::File { bytes: before, .. } = before else {
        return false;
    };
    let (Some(a), Some(b)) = (entries_of(before), entries_of(after)) else {
        return false;
    };
    a == b
}

fn entries_of(bytes: &[u8]) -> Option<Vec<IndexEntry>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let tmp = std::env::temp_dir().join(format!(
        ".arctl-index.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let read = std::fs::write(&tmp, bytes)
        .ok()
        .and_then(|()| git2::Index::open(&tmp).ok());
    let _ = std::fs::remove_file(&tmp);
    Some(
        read?
            .iter()
            .map(|e| (e.path, e.mode, e.id, (e.flags >> 12) & 3))
            .collect(),
    )
}

type InFlight = HashMap<PathBuf, Vec<(String, Weak<Mutex<Snapshot>>)>>;

fn in_flight() -> &'static Mutex<InFlight> {
    static M: OnceLock<Mutex<InFlight>> = OnceLock::new();
    M.get_or_init(Default::default)
}

fn key(common: &Path) -> PathBuf {
    common
        .canonicalize()
        .unwrap_or_else(|_| common.to_path_buf())
}

/// A snapshot in flight: registered so that [`own_write`] updates it, and so that the other
/// children on the repository know this run's worktree is being worked on.
pub struct Watched {
    pub snapshot: Arc<Mutex<Snapshot>>,
    common: PathBuf,
}

impl Watched {
    /// Snapshot the repository before a child of the run whose worktree is
    /// `ex.own_worktrees[0]`.
    pub fn begin(common: &Path, ex: Exclusions) -> Watched {
        let me = ex.own_worktrees.first().cloned().unwrap_or_default();
        let _g = writes().lock().unwrap_or_else(|e| e.into_inner());
        let taken = Snapshot::take(common, ex);
        let k = taken.canonical.clone();
        let snap = Arc::new(Mutex::new(taken));
        let mut m = in_flight().lock().unwrap_or_else(|e| e.into_inner());
        let list = m.entry(k.clone()).or_default();
        list.retain(|(_, w)| w.strong_count() > 0);
        for (other, w) in list.iter() {
            if let Some(o) = w.upgrade() {
                let mut o = o.lock().unwrap_or_else(|e| e.into_inner());
                let mut s = snap.lock().unwrap_or_else(|e| e.into_inner());
                o.overlapped.insert(me.clone());
                s.overlapped.insert(other.clone());
                o.others_holes.extend(s.ex.holes.iter().flatten().cloned());
                s.others_holes.extend(o.ex.holes.iter().flatten().cloned());
            }
        }
        list.push((me, Arc::downgrade(&snap)));
        Watched {
            snapshot: snap,
            common: k,
        }
    }
}

impl Watched {
    /// After the child: what changed (see [`Snapshot::compare`]), with the snapshot, under
    /// the lock that keeps arctl's own writes out of the comparison; `settle` restores what
    /// it must while the lock is held.
    pub fn finish<T>(&self, settle: impl FnOnce(&Snapshot, Vec<Touched>) -> T) -> T {
        let _g = writes().lock().unwrap_or_else(|e| e.into_inner());
        let snap = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        let touched = snap.compare();
        settle(&snap, touched)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut m = in_flight().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = m.get_mut(&self.common) {
            list.retain(|(_, w)| {
                w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.snapshot))
            });
        }
    }
}

/// Held while a snapshot is taken or compared, and while arctl writes a watched file.
fn writes() -> &'static Mutex<()> {
    static M: OnceLock<Mutex<()>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// Run `write`, arctl's own change of `rels` (relative to the common dir: refs,
/// `packed-refs`, `info/exclude`, `worktrees/<name>/HEAD`...) of the repository at
/// `common`; then every snapshot in flight there takes them as they are now.
pub fn own_write<T>(common: &Path, rels: &[&str], write: impl FnOnce() -> T) -> T {
    let _g = writes().lock().unwrap_or_else(|e| e.into_inner());
    let r = write();
    absorb(common, rels);
    r
}

fn absorb(common: &Path, rels: &[&str]) {
    let list: Vec<Arc<Mutex<Snapshot>>> = {
        let m = in_flight().lock().unwrap_or_else(|e| e.into_inner());
        m.get(&key(common))
            .map(|l| l.iter().filter_map(|(_, w)| w.upgrade()).collect())
            .unwrap_or_default()
    };
    for s in list {
        let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
        for r in rels {
            s.absorb_path(Path::new(r));
        }
    }
}

fn live() -> &'static Mutex<HashMap<PathBuf, Vec<String>>> {
    static M: OnceLock<Mutex<HashMap<PathBuf, Vec<String>>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// The runs live on the repository whose canonical common dir is `key`.
fn live_runs(key: &Path) -> Vec<String> {
    live()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .cloned()
        .unwrap_or_default()
}

/// A run's loop is live on a repository: its branch and refs are its own to guard (the
/// other runs' snapshots leave them out) until this is dropped.
pub struct LiveRun {
    common: PathBuf,
    id: String,
}

impl LiveRun {
    pub fn new(common: &Path, id: &str) -> LiveRun {
        let k = key(common);
        live()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k.clone())
            .or_default()
            .push(id.to_string());
        LiveRun {
            common: k,
            id: id.to_string(),
        }
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        let mut m = live().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = m.get_mut(&self.common) {
            if let Some(i) = l.iter().position(|x| *x == self.id) {
                l.remove(i);
            }
        }
    }
}

fn turns() -> &'static Mutex<HashSet<PathBuf>> {
    static M: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// A turn on the repository at `common`: in detect mode the children of all runs on one
/// repository run one at a time, so what changed during a child's run is surely its doing.
/// Waits for the turn; None when `give_up()` says so first.
pub fn take_turn(common: &Path, give_up: impl Fn() -> bool) -> Option<Turn> {
    let k = key(common);
    loop {
        if turns()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.clone())
        {
            return Some(Turn(k));
        }
        if give_up() {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A held turn (see [`take_turn`]), given back when dropped.
pub struct Turn(PathBuf);

impl Drop for Turn {
    fn drop(&mut self) {
        turns()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_is_read_again_when_it_changes_even_with_its_old_mtime() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config");
        std::fs::write(&p, "aaaa").unwrap();
        let read = || {
            let md = std::fs::symlink_metadata(&p).unwrap();
            file_cache::read(&p, &md).unwrap()
        };
        // Kept once it has settled: the same bytes come back without a read.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let first = loop {
            let (a, b) = (read(), read());
            if Arc::ptr_eq(&a, &b) {
                break a;
            }
            assert!(std::time::Instant::now() < deadline, "never cached");
            std::thread::yield_now();
        };
        assert_eq!(&*first, b"aaaa");
        // Same size, the old mtime put back: the change time still moves.
        let md = std::fs::metadata(&p).unwrap();
        std::fs::write(&p, "bbbb").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        let mtime = std::time::UNIX_EPOCH
            + std::time::Duration::new(md.mtime() as u64, md.mtime_nsec() as u32);
        f.set_modified(mtime).unwrap();
        assert_eq!(&*read(), b"bbbb");
    }

    fn git(dir: &Path, args: &[&str]) {
        let st = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    }

    /// A repository in a temp dir with `a.txt` committed on `main`: the temp dir, the
    /// repository and its common dir.
    fn one_commit() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().to_path_buf();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("a.txt"), "a\n").unwrap();
        git(&repo, &["add", "a.txt"]);
        git(&repo, &["commit", "-qm", "a"]);
        let common = repo.join(".git");
        (d, repo, common)
    }

    #[test]
    fn the_main_index_counts_as_changed_by_its_entries_not_its_bytes() {
        let (_d, repo, common) = one_commit();
        let repo = repo.as_path();
        let snap = Snapshot::take(&common, Exclusions::default());
        // A stat-only refresh rewrites the index's bytes, not its entries.
        let before = std::fs::read(common.join("index")).unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(repo.join("a.txt"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        git(repo, &["update-index", "--refresh"]);
        assert_ne!(std::fs::read(common.join("index")).unwrap(), before);
        assert_eq!(snap.compare(), vec![], "a refresh is no change");
        // A new entry is.
        std::fs::write(repo.join("b.txt"), "b\n").unwrap();
        git(repo, &["add", "b.txt"]);
        let touched = snap.compare();
        assert_eq!(touched.len(), 1, "{touched:?}");
        assert_eq!(touched[0].what, "changed");
    }

    #[test]
    fn byte_prefixes_agree_with_paths() {
        let paths = [
            "/r/.git",
            "/r/.git/",
            "/r/.git/refs/heads/main",
            "/r/.gitx/refs",
            "/r/.git//refs",
            "/r/.git/./refs",
            "/r/.git/../r/.git/refs",
            "/",
            "/dev/shm",
            "/dev/shmx/a",
            "rel/.git/hooks",
            "rel",
            ".",
            "",
        ];
        for p in paths {
            for d in paths {
                let (p, d) = (Path::new(p), Path::new(d));
                assert_eq!(under(p, d), p.starts_with(d), "{p:?} under {d:?}");
                assert_eq!(rel_of(p, d), p.strip_prefix(d).ok(), "{p:?} from {d:?}");
            }
        }
    }

    #[test]
    fn with_holes_only_what_lies_within_the_reach_is_watched() {
        let (_d, repo, common) = one_commit();
        let repo = repo.as_path();
        git(repo, &["branch", "autoresearch/old"]);
        git(
            repo,
            &["update-ref", "refs/autoresearch/old/discarded/1", "HEAD"],
        );
        let branches = common
            .join("refs/heads/autoresearch")
            .canonicalize()
            .unwrap();
        let take = |holes: Option<Vec<PathBuf>>| {
            Snapshot::take(
                &common,
                Exclusions {
                    holes,
                    ..Default::default()
                },
            )
        };
        let (reach, anywhere) = (take(Some(vec![branches])), take(None));
        // Outside the reach: not even read.
        assert!(!reach.files.keys().any(|p| p.ends_with("discarded/1")));
        assert!(!reach.files.keys().any(|p| p.ends_with("config")));
        std::fs::write(common.join("hooks/pre-commit"), "#!/bin/sh\n").unwrap();
        std::fs::write(common.join("refs/autoresearch/old/discarded/1"), "0\n").unwrap();
        std::fs::write(common.join("refs/heads/autoresearch/old"), "0\n").unwrap();
        let paths = |t: Vec<Touched>| -> Vec<String> {
            let mut p: Vec<String> = t.iter().map(|t| t.path.display().to_string()).collect();
            p.sort();
            p
        };
        assert_eq!(paths(reach.compare()), ["refs/heads/autoresearch/old"]);
        assert_eq!(
            paths(anywhere.compare()),
            [
                "hooks/pre-commit",
                "refs/autoresearch/old/discarded/1",
                "refs/heads/autoresearch/old"
            ]
        );
    }
}
