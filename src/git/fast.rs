//! Fast paths of the loop's git steps on big trees (issue 9: the orchestrator must cost less
//! than the git commands it replaces).
//!
//! Profile of one experiment on a 10,000-file repo before this module (perf on the daemon,
//! step timers in the loop): ~90% of the daemon's time went to five full walks of the work
//! tree per experiment — libgit2's `diff_tree_to_workdir_with_index` (scope check),
//! `index.add_all` + `update_all` (commit), `reset --hard` and a `statuses` walk (revert) —
//! each one readdir + lstat of every file by absolute path (kernel path lookups) plus
//! libgit2's iterator bookkeeping, ~30–45 ms apiece. The git CLI is not faster per walk
//! (`git status` ≈ libgit2's diff; `reset --hard` + `clean -fd` ≈ 55% of libgit2's reset +
//! statuses), so calling it would not have helped. What a daemon has and a shell loop does
//! not is knowledge between steps, so each step does only what its inputs require:
//!
//! * **scope check**: one stat-only walk ([`candidates`]: `read_dir` + `fstatat` relative to
//!   each folder, compared with the index's stat data) finds the paths that *may* differ
//!   from the index — a superset; libgit2 then diffs exactly those paths (`pathspec` +
//!   `disable_pathspec_match`, which libgit2 turns into an iterator path list), so the
//!   result is libgit2's own, entry for entry.
//! * **commit**: the scope check already listed the changed paths; only those are staged
//!   ([`WorkTree::commit_changes`]), and the index's tree cache makes `write_tree` touch
//!   only the changed folders.
//! * **revert**: one stat walk plus the tree diff between the index and the target gives
//!   the paths to restore; libgit2's checkout (force, remove untracked) runs on those paths
//!   only, the index is brought to the target at those paths, and the result is checked
//!   (`write_tree` of the index must be the target's tree) before it is trusted.
//!
//! Every fast path checks its preconditions (the index holds the tree it is compared
//! against; no conflicts, intent-to-add, skip-worktree or submodule entries; no nested
//! repository; a case-sensitive repo) and otherwise falls back to the full libgit2
//! operation, which stays the reference: the tests below compare both on every kind of
//! change a proposer can make.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use git2::{Index, IndexEntry, IndexEntryExtendedFlag, ObjectType, Oid, Repository, Tree};

use super::{Change, ChangeKind, WorkTree};

const GITLINK: u32 = 0o160000;

/// Paths of the work tree that may differ from the index — modified (stat data differs, or
/// too recent to tell), deleted, untracked (ignored ones are left to libgit2 to filter,
/// except whole ignored folders, which are not entered), type changes — found by a stat-only
/// walk. A superset of what libgit2's index-to-workdir diff reports. None when the index
/// or the work tree holds something this walk does not handle; the caller then uses
/// libgit2's full walk.
pub(crate) fn candidates(repo: &Repository, index: &Index) -> Option<Vec<Vec<u8>>> {
    let workdir = repo.workdir()?.to_path_buf();
    if repo
        .config()
        .ok()?
        .get_bool("core.ignorecase")
        .unwrap_or(false)
    {
        return None;
    }
    // Racy entries: a file changed in the same instant the index was written can have the
    // index's stat data; libgit2 compares the content of entries not older than the index.
    let stamp = std::fs::metadata(repo.path().join("index")).ok()?;
    let index_time = (stamp.mtime(), stamp.mtime_nsec());
    let entries: Vec<IndexEntry> = index.iter().collect();
    // Folder → its files (name, entry), in name order: the index is sorted by path, so the
    // files of one folder come in name order, and consecutive entries mostly share a folder.
    let mut dirs: Dirs =
        HashMap::with_capacity_and_hasher(entries.len() / 8 + 1, FnvBuild::default());
    let odd = IndexEntryExtendedFlag::INTENT_TO_ADD | IndexEntryExtendedFlag::SKIP_WORKTREE;
    let mut last: Option<(&[u8], usize)> = None;
    let mut files: Vec<Vec<(&[u8], usize)>> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let stage = (e.flags >> 12) & 3;
        if stage != 0 || e.flags_extended & odd.bits() != 0 || e.mode == GITLINK {
            return None;
        }
        let p = &e.path[..];
        let (dir, name) = match p.iter().rposition(|b| *b == b'/') {
            Some(slash) => (&p[..slash], &p[slash + 1..]),
            None => (&p[..0], p),
        };
        let slot = match last {
            Some((d, slot)) if d == dir => slot,
            _ => {
                let slot = match dirs.get(dir) {
                    Some(&slot) => slot,
                    None => {
                        // A new folder, and its parents.
                        files.push(Vec::new());
                        let slot = files.len() - 1;
                        dirs.insert(dir, slot);
                        let mut parent = dir;
                        while !parent.is_empty() {
                            parent =
                                &parent[..parent.iter().rposition(|b| *b == b'/').unwrap_or(0)];
                            if dirs.contains_key(parent) {
                                break;
                            }
                            files.push(Vec::new());
                            dirs.insert(parent, files.len() - 1);
                        }
                        slot
                    }
                };
                last = Some((dir, slot));
                slot
            }
        };
        files[slot].push((name, i));
    }
    if !dirs.contains_key(&b""[..]) {
        files.push(Vec::new());
        dirs.insert(&b""[..], files.len() - 1);
    }
    for f in &mut files {
        // Sorted already unless a name sorts around a folder's (`a-b` vs `a/`).
        f.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    let root: OwnedFd = std::fs::File::open(&workdir).ok()?.into();
    let walk = Walk {
        root: &root,
        dirs: &dirs,
        files: &files,
        entries: &entries,
        index_time,
    };
    let mut found = walk.tracked()?;
    // Untracked folders, one by one: libgit2 does not enter an ignored one either.
    while let Some(rel) = found.untracked_dirs.pop() {
        let mut probe = rel.clone();
        probe.push(b'/');
        if repo
            .is_path_ignored(Path::new(OsStr::from_bytes(&probe)))
            .ok()?
        {
            continue;
        }
        let mut next = Vec::new();
        if !walk.dir(&rel, &mut found, &mut next) {
            return None;
        }
        debug_assert!(next.is_empty(), "no tracked folder under an untracked one");
    }
    let mut seen = vec![false; entries.len()];
    for i in found.seen {
        seen[i] = true;
    }
    let mut out = found.out;
    for (i, s) in seen.iter().enumerate() {
        if !s {
            out.push(entries[i].path.clone());
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// Below this many index entries the walk stays on the calling thread.
const PARALLEL_FROM: usize = 4096;

/// What the stat walk compares the work tree with.
struct Walk<'a> {
    /// The work tree, open: folders are opened relative to it.
    root: &'a OwnedFd,
    /// Folder (relative path) → slot in `files`.
    dirs: &'a Dirs<'a>,
    /// Per folder: its files' names and index entries, sorted by name.
    files: &'a [Vec<(&'a [u8], usize)>],
    entries: &'a [IndexEntry],
    index_time: (i64, i64),
}

type Dirs<'a> = HashMap<&'a [u8], usize, FnvBuild>;

/// What a walk found.
#[derive(Default)]
struct Found {
    /// Paths that may differ.
    out: Vec<Vec<u8>>,
    /// Index entries met in the work tree.
    seen: Vec<usize>,
    /// Folders no index entry lies in (checked against the ignore rules by the caller).
    untracked_dirs: Vec<Vec<u8>>,
}

/// A folder to list, by its path relative to the work tree.
type Job = Vec<u8>;

/// An open folder listing (closed on drop).
struct DirStream(*mut libc::DIR);

impl DirStream {
    /// `rel` opened relative to `root` (not following a symlink in its last component).
    fn open(root: &OwnedFd, rel: &[u8]) -> Option<DirStream> {
        let path = CString::new(if rel.is_empty() { &b"."[..] } else { rel }).ok()?;
        // SAFETY: openat on a valid fd with a NUL-terminated path.
        let fd = unsafe {
            libc::openat(
                root.as_raw_fd(),
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is ours; on success fdopendir owns it (closedir closes it).
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            // SAFETY: fdopendir failed, the fd is still ours.
            unsafe { libc::close(fd) };
            return None;
        }
        Some(DirStream(dir))
    }

    /// The next entry's d_type, its name (NUL-terminated) copied into `name`; `.` and
    /// `..` skipped; Err on a read error.
    fn next(&mut self, name: &mut Vec<u8>) -> Result<Option<u8>, ()> {
        loop {
            // SAFETY: errno is thread-local; readdir64 on our open stream; the entry is
            // copied out before the next call.
            unsafe {
                *libc::__errno_location() = 0;
                let ent = libc::readdir64(self.0);
                if ent.is_null() {
                    return if *libc::__errno_location() == 0 {
                        Ok(None)
                    } else {
                        Err(())
                    };
                }
                let n = CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes_with_nul();
                if matches!(n, b".\0" | b"..\0") {
                    continue;
                }
                name.clear();
                name.extend_from_slice(n);
                return Ok(Some((*ent).d_type));
            }
        }
    }

    /// lstat of an entry of this folder (no path walk, symlinks not followed).
    fn stat(&self, name: &CStr) -> Option<libc::stat64> {
        // SAFETY: stat64 is plain data; fstatat64 fills it for a name in our open folder.
        unsafe {
            let mut st: libc::stat64 = std::mem::zeroed();
            let r = libc::fstatat64(
                libc::dirfd(self.0),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            );
            (r == 0).then_some(st)
        }
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the stream is open and closed only here.
        unsafe { libc::closedir(self.0) };
    }
}

impl Walk<'_> {
    /// Every folder holding index entries, from the root: on a few threads for big
    /// indexes (the cost is the kernel's, per `fstatat`; git's own status spreads its lstat
    /// calls over threads too). None when the walk cannot be trusted.
    fn tracked(&self) -> Option<Found> {
        let threads = worker_threads(self.entries.len(), PARALLEL_FROM);
        if threads == 1 {
            let mut found = Found::default();
            let mut stack = vec![Vec::new()];
            while let Some(rel) = stack.pop() {
                if !self.dir(&rel, &mut found, &mut stack) {
                    return None;
                }
            }
            return Some(found);
        }
        // A shared stack of folders; a worker ends when it is empty and nobody is busy.
        let queue = std::sync::Mutex::new((vec![Vec::new()], 0usize));
        let wake = std::sync::Condvar::new();
        let failed = std::sync::atomic::AtomicBool::new(false);
        let worker = || {
            let mut found = Found::default();
            loop {
                let job: Option<Job> = {
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(j) = q.0.pop() {
                            q.1 += 1;
                            break Some(j);
                        }
                        if q.1 == 0 {
                            break None;
                        }
                        q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let Some(rel) = job else {
                    wake.notify_all();
                    return found;
                };
                let mut next = Vec::new();
                if !failed.load(std::sync::atomic::Ordering::Relaxed)
                    && !self.dir(&rel, &mut found, &mut next)
                {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                let more = !next.is_empty();
                q.0.extend(next);
                q.1 -= 1;
                let done = q.1 == 0 && q.0.is_empty();
                drop(q);
                if more || done {
                    wake.notify_all();
                }
            }
        };
        let mut all = Found::default();
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
            let mut parts = vec![worker()];
            parts.extend(helpers.into_iter().filter_map(|h| h.join().ok()));
            if parts.len() != threads {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            for p in parts {
                all.out.extend(p.out);
                all.seen.extend(p.seen);
                all.untracked_dirs.extend(p.untracked_dirs);
            }
        });
        (!failed.into_inner()).then_some(all)
    }

    /// One folder: files compared with their index entries, tracked subfolders pushed to
    /// `next`, untracked ones to `found.untracked_dirs`. False: something this walk does
    /// not handle (unreadable folder or entry, nested repository).
    fn dir(&self, rel: &[u8], found: &mut Found, next: &mut Vec<Job>) -> bool {
        let Some(mut dir) = DirStream::open(self.root, rel) else {
            return false;
        };
        // This folder's files in the index (none for an untracked folder).
        let mine: &[(&[u8], usize)] = self
            .dirs
            .get(rel)
            .map(|&slot| &self.files[slot][..])
            .unwrap_or(&[]);
        let lookup = |name: &[u8]| {
            mine.binary_search_by(|e| e.0.cmp(name))
                .ok()
                .map(|k| mine[k].1)
        };
        // `rel/` + each name, in one buffer: a path is only copied when it is kept.
        let mut r = Vec::with_capacity(rel.len() + 64);
        r.extend_from_slice(rel);
        if !r.is_empty() {
            r.push(b'/');
        }
        let base = r.len();
        let mut buf = Vec::with_capacity(64);
        loop {
            let d_type = match dir.next(&mut buf) {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(()) => return false,
            };
            let Ok(name) = CStr::from_bytes_with_nul(&buf) else {
                return false;
            };
            let bytes = name.to_bytes();
            if bytes == b".git" {
                if rel.is_empty() {
                    continue;
                }
                return false; // a nested repository: libgit2 reports it as one entry
            }
            r.truncate(base);
            r.extend_from_slice(bytes);
            // The type comes with the listing (d_type): only tracked files are stat'ed.
            let mut st = None;
            let is_dir = match d_type {
                libc::DT_DIR => true,
                libc::DT_UNKNOWN => {
                    let Some(s) = dir.stat(name) else {
                        return false;
                    };
                    st = Some(s);
                    s.st_mode & libc::S_IFMT == libc::S_IFDIR
                }
                _ => false,
            };
            if is_dir {
                if let Some(i) = lookup(bytes) {
                    found.seen.push(i); // a tracked file became a folder
                    found.out.push(r.clone());
                }
                if self.dirs.contains_key(&r[..]) {
                    next.push(r.clone());
                } else {
                    found.untracked_dirs.push(r.clone());
                }
            } else {
                match lookup(bytes) {
                    Some(i) => {
                        found.seen.push(i);
                        let Some(st) = st.or_else(|| dir.stat(name)) else {
                            return false;
                        };
                        if !same_stat(&self.entries[i], &st, self.index_time) {
                            found.out.push(r.clone());
                        }
                    }
                    None => found.out.push(r.clone()),
                }
            }
        }
        true
    }
}

/// FNV-1a: the walk hashes every index path twice; SipHash's DoS resistance buys nothing
/// for paths read from our own index.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf29ce484222325
        } else {
            self.0
        };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// Does the file look exactly as the index entry recorded it, and was it recorded long
/// enough before the index was written to trust that?
fn same_stat(e: &IndexEntry, st: &libc::stat64, index_time: (i64, i64)) -> bool {
    let mode = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if st.st_mode & 0o100 != 0 => 0o100755,
        libc::S_IFREG => 0o100644,
        libc::S_IFLNK => 0o120000,
        _ => return false,
    };
    let racy = (e.mtime.seconds() as i64, e.mtime.nanoseconds() as i64) >= index_time;
    e.mode == mode
        && !racy
        && e.file_size == st.st_size as u32
        && e.mtime.seconds() == st.st_mtime as i32
        && e.mtime.nanoseconds() == st.st_mtime_nsec as u32
        && e.ctime.seconds() == st.st_ctime as i32
        && e.ctime.nanoseconds() == st.st_ctime_nsec as u32
        && e.ino == st.st_ino as u32
}

/// Paths whose entry (id or mode) differs between two trees — changed, added, deleted,
/// type changes — found by descending only into subtrees whose ids differ. libgit2's tree
/// diff visits every entry of both trees (20 ms at 100,000 files); diffing exactly these
/// paths gives the same deltas.
pub(crate) fn tree_changes(repo: &Repository, a: &Tree, b: &Tree) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if a.id() != b.id() {
        tree_walk(repo, Some(a.id()), Some(b.id()), &mut Vec::new(), &mut out)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// (name, id, mode, is a tree) of a tree's entries.
type TreeItem = (Vec<u8>, Oid, i32, bool);

fn tree_items(repo: &Repository, id: Option<Oid>) -> Result<Vec<TreeItem>> {
    let Some(id) = id else { return Ok(Vec::new()) };
    let t = repo.find_tree(id)?;
    let items = t
        .iter()
        .map(|e| {
            (
                e.name_bytes().to_vec(),
                e.id(),
                e.filemode(),
                e.kind() == Some(ObjectType::Tree),
            )
        })
        .collect();
    Ok(items)
}

fn tree_walk(
    repo: &Repository,
    a: Option<Oid>,
    b: Option<Oid>,
    prefix: &mut Vec<u8>,
    out: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let (ia, ib) = (tree_items(repo, a)?, tree_items(repo, b)?);
    let in_b: HashMap<&[u8], &TreeItem, FnvBuild> = ib.iter().map(|e| (&e.0[..], e)).collect();
    let in_a: HashMap<&[u8], &TreeItem, FnvBuild> = ia.iter().map(|e| (&e.0[..], e)).collect();
    let base = prefix.len();
    let both = ia
        .iter()
        .map(|x| (&x.0[..], Some(x), in_b.get(&x.0[..]).copied()));
    let only_b = ib
        .iter()
        .filter(|y| !in_a.contains_key(&y.0[..]))
        .map(|y| (&y.0[..], None, Some(y)));
    for (name, x, y) in both.chain(only_b) {
        if let (Some(x), Some(y)) = (x, y) {
            if x.1 == y.1 && x.2 == y.2 {
                continue;
            }
        }
        prefix.truncate(base);
        if base > 0 {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(name);
        let end = prefix.len();
        let sub = |e: Option<&TreeItem>| e.filter(|e| e.3).map(|e| e.1);
        let (ta, tb) = (sub(x), sub(y));
        if ta.is_some() || tb.is_some() {
            tree_walk(repo, ta, tb, prefix, out)?;
            prefix.truncate(end);
        }
        // A blob (or gitlink) on either side: the path itself.
        if x.is_some_and(|e| !e.3) || y.is_some_and(|e| !e.3) {
            out.push(prefix.clone());
        }
    }
    prefix.truncate(base);
    Ok(())
}

impl WorkTree {
    /// libgit2's diff of two trees, on the paths that differ only (see [`tree_changes`]).
    pub(crate) fn diff_trees(&self, a: &Tree, b: &Tree) -> Result<git2::Diff<'_>> {
        let paths = tree_changes(&self.repo, a, b)?;
        let mut opts = git2::DiffOptions::new();
        opts.disable_pathspec_match(true);
        if paths.is_empty() {
            // Same trees: a path in neither, so the diff is empty without a walk.
            opts.pathspec("\u{1}arctl: no path");
        }
        for p in paths {
            opts.pathspec(p);
        }
        Ok(self
            .repo
            .diff_tree_to_tree(Some(a), Some(b), Some(&mut opts))?)
    }
}

/// The repo's index, re-read if it changed on disk.
fn fresh_index(repo: &Repository) -> Result<Index> {
    let mut index = repo.index()?;
    index.read(false)?;
    Ok(index)
}

/// The tree the index holds (None with conflicts). Free when the index's tree cache is
/// valid, which it is after every write this module makes.
fn index_tree(index: &mut Index) -> Option<Oid> {
    index.write_tree().ok()
}

impl WorkTree {
    /// The paths [`WorkTree::changes_since`] needs to diff against `tree`: Some(candidates)
    /// when the index holds `tree` and the stat walk applies, None for a full diff.
    pub(crate) fn paths_to_diff(&self, tree: &Tree) -> Result<Option<Vec<Vec<u8>>>> {
        let mut index = fresh_index(&self.repo)?;
        if index_tree(&mut index) != Some(tree.id()) {
            return Ok(None);
        }
        Ok(candidates(&self.repo, &index))
    }

    /// Commit the work tree on HEAD with `parent` as the only parent, staging only
    /// `changes` (what [`WorkTree::changes_since`]`(parent)` just returned, nothing having
    /// run since). Same result as [`WorkTree::commit_all`], which it falls back to when the
    /// index does not hold `parent`'s tree or a path cannot be staged alone.
    pub fn commit_changes(&self, changes: &[Change], message: &str, parent: Oid) -> Result<Oid> {
        match self.stage_changes(changes, parent) {
            Ok(Some(tree)) => self.commit_tree(tree, message, parent),
            Ok(None) | Err(_) => {
                // Drop whatever was staged in memory; the full path starts from disk.
                fresh_index(&self.repo)?.read(true)?;
                self.commit_all(message, parent)
            }
        }
    }

    fn stage_changes(&self, changes: &[Change], parent: Oid) -> Result<Option<Oid>> {
        let mut index = fresh_index(&self.repo)?;
        let parent_tree = self.repo.find_commit(parent)?.tree_id();
        if index_tree(&mut index) != Some(parent_tree) {
            return Ok(None);
        }
        for c in changes {
            let p = Path::new(&c.path);
            match c.kind {
                ChangeKind::Deleted => index.remove_path(p)?,
                ChangeKind::Added | ChangeKind::Modified => {
                    let md = std::fs::symlink_metadata(self.path.join(p))?;
                    if !(md.file_type().is_file() || md.file_type().is_symlink()) {
                        return Ok(None);
                    }
                    index.add_path(p)?;
                }
            }
        }
        // Tree first: the index is written with a valid tree cache.
        let tree = index.write_tree()?;
        index.write()?;
        Ok(Some(tree))
    }

    fn commit_tree(&self, tree: Oid, message: &str, parent: Oid) -> Result<Oid> {
        let tree = self.repo.find_tree(tree)?;
        let parent = self.repo.find_commit(parent)?;
        let sig = self.signature();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
            .context("committing the experiment")
    }

    /// The revert of [`WorkTree::restore`] (HEAD already moved to `oid`), on the paths
    /// that differ only. Ok(false): not applicable, or the result did not check out; the
    /// caller does the full reset.
    pub(crate) fn fast_revert(&self, oid: Oid) -> Result<bool> {
        let target = self.repo.find_commit(oid)?.tree()?;
        let mut index = fresh_index(&self.repo)?;
        let Some(current) = index_tree(&mut index) else {
            return Ok(false);
        };
        let Some(mut paths) = candidates(&self.repo, &index) else {
            return Ok(false);
        };
        if current != target.id() {
            let from = self.repo.find_tree(current)?;
            paths.extend(tree_changes(&self.repo, &from, &target)?);
            paths.sort();
            paths.dedup();
        }
        if paths.is_empty() {
            return Ok(true);
        }
        // The files only: the index is set below, and written once.
        let mut co = git2::build::CheckoutBuilder::new();
        co.force()
            .remove_untracked(true)
            .disable_pathspec_match(true)
            .update_index(false);
        for p in &paths {
            co.path(&p[..]);
        }
        self.repo.checkout_tree(target.as_object(), Some(&mut co))?;
        let mut index = fresh_index(&self.repo)?;
        let staged = (|| -> Result<bool> {
            for p in &paths {
                let path = Path::new(OsStr::from_bytes(p));
                match target.get_path(path) {
                    // Hashes the file just checked out and records its fresh stat data.
                    Ok(te) if te.kind() == Some(ObjectType::Blob) => index.add_path(path)?,
                    _ => {
                        if index.get_path(path, 0).is_some() {
                            index.remove_path(path)?;
                        }
                    }
                }
            }
            Ok(index_tree(&mut index) == Some(target.id()))
        })();
        if !matches!(staged, Ok(true)) {
            index.read(true)?; // drop what was staged in memory
            return Ok(false);
        }
        index.write()?;
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// A new run's worktree

/// Threads for `items` items of work: one below `from`, else one per core (at most 4).
fn worker_threads(items: usize, from: usize) -> usize {
    if items < from {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// Below this many files a new worktree is written on the calling thread.
const PARALLEL_CHECKOUT_FROM: usize = 2000;

/// One file of the tree to check out.
struct Item {
    path: Vec<u8>,
    id: Oid,
    mode: i32,
}

/// Create the worktree `name` at `path` with HEAD on `refname` (an existing branch at
/// `base`), as `git_worktree_add` does, but with each file opened relative to its folder
/// and without libgit2's per-file attribute lookups (its checkout loads the attribute files of
/// every file's folders, resolving each with realpath: ~40% of its time). Ok(false), with
/// nothing created: the repo or the tree uses something only libgit2's checkout handles
/// (attributes, filters, end-of-line conversion, submodules, symlinks off, unusual paths),
/// and the caller uses `git_worktree_add`. Err: something failed; what was created is
/// removed.
pub(crate) fn add_worktree(
    repo: &Repository,
    name: &str,
    path: &Path,
    refname: &str,
    base: Oid,
) -> Result<bool> {
    let Some(items) = plain_tree(repo, base)? else {
        return Ok(false);
    };
    let admin = repo.commondir().join("worktrees").join(name);
    let made = (|| -> Result<()> {
        write_admin(repo, &admin, path, refname)?;
        let stats = write_files(repo, path, &items)?;
        write_index(&admin, &items, &stats)
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(path);
        let _ = std::fs::remove_dir_all(&admin);
        return Err(e);
    }
    Ok(true)
}

/// The files of `base`'s tree, in index (byte) order; None when the tree or the repo's
/// configuration needs libgit2's checkout.
fn plain_tree(repo: &Repository, base: Oid) -> Result<Option<Vec<Item>>> {
    let cfg = repo.config()?.snapshot()?;
    let set = |k: &str| cfg.get_entry(k).is_ok();
    let is_true = |k: &str| cfg.get_bool(k).unwrap_or(false);
    let autocrlf = cfg
        .get_string("core.autocrlf")
        .map(|v| v != "false")
        .unwrap_or(false);
    if autocrlf
        || set("core.eol")
        || set("core.attributesfile")
        || is_true("core.ignorecase")
        || !cfg.get_bool("core.symlinks").unwrap_or(true)
    {
        return Ok(None);
    }
    // Attribute files libgit2 would read: the repo's, the user's, the system's.
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    let mut attr_files = vec![
        repo.commondir().join("info/attributes"),
        Path::new("/etc/gitattributes").to_path_buf(),
    ];
    attr_files.extend(xdg.map(|x| x.join("git/attributes")));
    if attr_files.iter().any(|f| f.exists()) {
        return Ok(None);
    }
    let tree = repo.find_commit(base)?.tree()?;
    let mut items = Vec::new();
    let mut plain = true;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        let name = e.name_bytes();
        // What libgit2 would refuse or treat specially: left to it.
        let odd = name.is_empty()
            || name == b"."
            || name == b".."
            || name.eq_ignore_ascii_case(b".git")
            || name.eq_ignore_ascii_case(b".gitattributes")
            || name.len() >= 4 && name[..4].eq_ignore_ascii_case(b"git~")
            || name.iter().any(|b| matches!(b, b'\\' | b':' | 0));
        if odd || e.kind() == Some(ObjectType::Commit) {
            plain = false;
            return git2::TreeWalkResult::Abort;
        }
        if e.kind() == Some(ObjectType::Blob) {
            if !matches!(e.filemode(), 0o100644 | 0o100755 | 0o120000) {
                plain = false; // e.g. 100664 of old trees: libgit2 normalises it
                return git2::TreeWalkResult::Abort;
            }
            let mut path = root.as_bytes().to_vec();
            path.extend_from_slice(name);
            items.push(Item {
                path,
                id: e.id(),
                mode: e.filemode(),
            });
        }
        git2::TreeWalkResult::Ok
    });
    if !plain || walked.is_err() {
        return Ok(None);
    }
    items.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(items))
}

/// The admin folder and the worktree's `.git`, with the contents `git_worktree_add` writes.
fn write_admin(repo: &Repository, admin: &Path, path: &Path, refname: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut mkdir = std::fs::DirBuilder::new();
    mkdir.mode(0o755);
    let worktrees = admin.parent().context("admin folder")?;
    if !worktrees.exists() {
        mkdir.create(worktrees)?;
    }
    mkdir
        .create(admin)
        .with_context(|| format!("creating {}", admin.display()))?;
    mkdir
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let admin = admin.canonicalize()?;
    let wd = path.canonicalize()?;
    let common = repo.commondir().canonicalize()?;
    let new_file = |p: &Path, text: String| -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(p)?;
        f.write_all(text.as_bytes())?;
        Ok(())
    };
    new_file(&wd.join(".git"), format!("gitdir: {}/\n", admin.display()))?;
    new_file(&admin.join("commondir"), format!("{}/\n", common.display()))?;
    new_file(&admin.join("gitdir"), format!("{}/.git\n", wd.display()))?;
    new_file(&admin.join("HEAD"), format!("ref: {refname}\n"))?;
    Ok(())
}

/// Write every item under `root` (folders first, then the files, each opened relative to
/// its open folder: no path walk per file); the stat of each file as written, by item.
fn write_files(repo: &Repository, root: &Path, items: &[Item]) -> Result<Vec<libc::stat64>> {
    use std::os::unix::fs::DirBuilderExt;
    let mut mkdir = std::fs::DirBuilder::new();
    mkdir.mode(0o755).recursive(true);
    fn split(p: &[u8]) -> (&[u8], &[u8]) {
        match p.iter().rposition(|b| *b == b'/') {
            Some(k) => (&p[..k], &p[k + 1..]),
            None => (&p[..0], p),
        }
    }
    // Runs of files of one folder; the folders made first.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        match runs.last_mut() {
            Some((start, end)) if split(&items[*start].path).0 == split(&it.path).0 => *end = i + 1,
            _ => {
                let abs = root.join(OsStr::from_bytes(split(&it.path).0));
                mkdir
                    .create(&abs)
                    .with_context(|| format!("creating {}", abs.display()))?;
                runs.push((i, i + 1));
            }
        }
    }
    // A thread per core for big trees, each writing whole folders: two threads creating
    // files in one folder contend for its lock (that made 2 threads slower than 1); by
    // folder, 2 threads took ~0.6x the time of one on 10,000 files here.
    let threads = worker_threads(items.len(), PARALLEL_CHECKOUT_FROM);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = |repo: &Repository| -> Result<Vec<(usize, libc::stat64)>> {
        let mut out = Vec::new();
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(start, end)) = runs.get(k) else {
                return Ok(out);
            };
            let dir: OwnedFd =
                std::fs::File::open(root.join(OsStr::from_bytes(split(&items[start].path).0)))?
                    .into();
            for (i, it) in items.iter().enumerate().take(end).skip(start) {
                let name = CString::new(split(&it.path).1)?;
                let blob = repo.find_blob(it.id)?;
                let st = write_one(&dir, &name, it.mode, blob.content())
                    .with_context(|| format!("writing {}", String::from_utf8_lossy(&it.path)))?;
                out.push((i, st));
            }
        }
    };
    let mut stats = vec![None; items.len()];
    let parts: Vec<Result<Vec<(usize, libc::stat64)>>> = if threads <= 1 {
        vec![work(repo)]
    } else {
        let common = repo.commondir().to_path_buf();
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads)
                .map(|_| {
                    let (common, work) = (&common, &work);
                    s.spawn(move || work(&Repository::open(common)?))
                })
                .collect();
            let mut parts = vec![work(repo)];
            parts.extend(helpers.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("checkout thread panicked")))
            }));
            parts
        })
    };
    for part in parts {
        for (i, st) in part? {
            stats[i] = Some(st);
        }
    }
    stats
        .into_iter()
        .map(|s| s.context("a file was not written"))
        .collect()
}

/// One file (or symlink) in the open folder `dir`, as libgit2's checkout writes it: mode
/// 0644 or 0755 (umask applied), the blob's bytes; its stat as written.
fn write_one(dir: &OwnedFd, name: &CStr, mode: i32, content: &[u8]) -> Result<libc::stat64> {
    // SAFETY: plain syscalls on fds we own and NUL-terminated names; stat64 is plain data.
    unsafe {
        let mut st: libc::stat64 = std::mem::zeroed();
        if mode == 0o120000 {
            let target = CString::new(content)?;
            if libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) != 0
                || libc::fstatat64(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                ) != 0
            {
                return Err(std::io::Error::last_os_error().into());
            }
            return Ok(st);
        }
        let perm: libc::c_uint = if mode == 0o100755 { 0o755 } else { 0o644 };
        let fd = libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            perm,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut f = std::fs::File::from(OwnedFd::from_raw_fd(fd));
        std::io::Write::write_all(&mut f, content)?;
        if libc::fstat64(f.as_raw_fd(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(st)
    }
}

/// The worktree's index (`index` in its admin folder): every item with the stat data of
/// its file, as git's checkout records it. Written directly in git's index format version
/// 2 (no extensions; git and libgit2 rebuild the tree cache when they need it): adding
/// 100,000 entries through libgit2 (path checks and a sorted insert per entry) and reading
/// the tree back for its cache took ~0.4 s here, a fifth of the whole checkout; this takes
/// ~20 ms. `items` are in index order (plain byte order of the paths).
fn write_index(admin: &Path, items: &[Item], stats: &[libc::stat64]) -> Result<()> {
    use sha1::Digest;
    use std::io::Write;
    let mut out = Vec::with_capacity(12 + items.len() * 96 + 20);
    out.extend_from_slice(b"DIRC");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&u32::try_from(items.len())?.to_be_bytes());
    for (it, st) in items.iter().zip(stats) {
        // The index keeps the low 32 bits of each number.
        for v in [
            st.st_ctime as u32,
            st.st_ctime_nsec as u32,
            st.st_mtime as u32,
            st.st_mtime_nsec as u32,
            st.st_dev as u32,
            st.st_ino as u32,
            it.mode as u32,
            st.st_uid,
            st.st_gid,
            st.st_size as u32,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(it.id.as_bytes());
        out.extend_from_slice(&(it.path.len().min(0xfff) as u16).to_be_bytes());
        out.extend_from_slice(&it.path);
        // 1 to 8 NULs: each entry's length is a multiple of 8.
        let pad = 8 - (62 + it.path.len()) % 8;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    let sum = sha1::Sha1::digest(&out);
    out.extend_from_slice(&sum);
    // As git does: write `index.lock`, then rename it over `index`.
    let lock = admin.join("index.lock");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
        .with_context(|| format!("creating {}", lock.display()))?;
    f.write_all(&out)
        .and_then(|_| std::fs::rename(&lock, admin.join("index")))
        .with_context(|| format!("writing {}", lock.display()))
}

#[cfg(test)]
mod tests {
    //! The fast paths against the full libgit2 operations, on twin worktrees put through
    //! the same changes.
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let o = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A repo with tracked files, an ignored folder and an ignored file pattern, and two
    /// worktrees on branches `a` and `b` at its commit.
    fn twins() -> (tempfile::TempDir, PathBuf, PathBuf, Oid) {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        write(&repo.join(".gitignore"), "build/\n*.log\n");
        for i in 0..30 {
            write(
                &repo.join(format!("src/d{}/f{i}.txt", i % 4)),
                &format!("file {i}\n"),
            );
        }
        write(&repo.join("top.txt"), "top\n");
        write(&repo.join("tool.sh"), "#!/bin/sh\n");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);
        let head = Oid::from_str(git(&repo, &["rev-parse", "HEAD"]).trim()).unwrap();
        let r = Repository::open(&repo).unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for (name, p) in [("a", &a), ("b", &b)] {
            super::super::create_worktree(&r, name, name, head, p).unwrap();
        }
        (d, a, b, head)
    }

    /// Apply one scenario to a worktree.
    fn change(wt: &Path, scenario: usize) {
        let w = |p: &str, t: &str| write(&wt.join(p), t);
        match scenario {
            0 => w("src/d1/f1.txt", "changed\n"),
            1 => {
                w("src/new/deep/x.txt", "new\n");
                w("src/new/y.txt", "new\n");
            }
            2 => std::fs::remove_file(wt.join("src/d2/f2.txt")).unwrap(),
            3 => {
                w("build/out.bin", "ignored\n");
                w("src/d0/trace.log", "ignored\n");
                w("src/d0/f0.txt", "changed\n");
            }
            4 => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    wt.join("tool.sh"),
                    std::fs::Permissions::from_mode(0o755),
                )
                .unwrap();
            }
            5 => {
                std::fs::remove_file(wt.join("top.txt")).unwrap();
                std::os::unix::fs::symlink("src/d1/f1.txt", wt.join("top.txt")).unwrap();
            }
            6 => {
                // A tracked file replaced by a folder.
                std::fs::remove_file(wt.join("top.txt")).unwrap();
                w("top.txt/inner.txt", "inner\n");
            }
            7 => {
                // Same size, same second: only the racy check or ctime can tell.
                let p = wt.join("src/d3/f3.txt");
                let before = std::fs::metadata(&p).unwrap();
                std::fs::write(&p, "FILE 3\n").unwrap();
                let _ = before;
            }
            8 => {
                // Staged by the proposer, then the file changed again.
                w("src/d1/f5.txt", "staged\n");
                git(wt, &["add", "src/d1/f5.txt"]);
                w("src/d1/f5.txt", "staged then changed\n");
            }
            9 => {
                // A whole untracked folder of ignored files, and an empty one.
                w("src/gen/a.log", "x\n");
                std::fs::create_dir_all(wt.join("src/empty")).unwrap();
            }
            10 => {
                // Nested repository: the fast walk must step aside.
                std::fs::create_dir_all(wt.join("vendor/nested")).unwrap();
                git(&wt.join("vendor/nested"), &["init", "-q"]);
                w("vendor/nested/n.txt", "n\n");
            }
            11 => {} // nothing
            _ => unreachable!(),
        }
    }

    const SCENARIOS: usize = 12;

    fn full_changes(wt: &WorkTree, base: Oid) -> Vec<Change> {
        // changes_since with the fast path disabled: the plain full diff.
        let tree = wt.repo.find_commit(base).unwrap().tree().unwrap();
        let mut opts = git2::DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(false)
            .include_typechange(true);
        let diff = wt
            .repo
            .diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))
            .unwrap();
        super::super::deltas_to_changes(&diff)
    }

    /// Files of a work tree (ignored ones included), with contents and modes.
    fn snapshot(p: &Path) -> Vec<(String, String, u32)> {
        let mut out = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(p).unwrap().display().to_string();
                if rel == ".git" {
                    continue;
                }
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                if md.is_dir() {
                    out.push((format!("{rel}/"), String::new(), 0));
                    stack.push(e.path());
                } else if md.file_type().is_symlink() {
                    out.push((
                        rel,
                        std::fs::read_link(e.path()).unwrap().display().to_string(),
                        0o120000,
                    ));
                } else {
                    out.push((
                        rel,
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                        md.mode() & 0o777,
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn scope_check_commit_and_revert_match_the_full_operations() {
        for s in 0..SCENARIOS {
            let (_d, a, b, head) = twins();
            let (wa, wb) = (WorkTree::open(&a).unwrap(), WorkTree::open(&b).unwrap());
            change(&a, s);
            change(&b, s);
            // Scope check.
            let fast = wa.changes_since(head).unwrap();
            assert_eq!(fast, full_changes(&wa, head), "scenario {s}: changes_since");
            assert_eq!(
                fast,
                wb.changes_since(head).unwrap(),
                "scenario {s}: twins differ"
            );
            if fast.is_empty() {
                continue;
            }
            // Commit: the fast staging against add_all + update_all.
            let (ca, cb) = match (
                wa.commit_changes(&fast, "experiment", head),
                wb.commit_all("experiment", head),
            ) {
                (Ok(ca), Ok(cb)) => (ca, cb),
                // libgit2's add_all refuses a nested repository: both paths fail alike.
                (Err(ea), Err(eb)) => {
                    assert_eq!(format!("{ea:#}"), format!("{eb:#}"), "scenario {s}");
                    continue;
                }
                (ra, rb) => panic!("scenario {s}: commit_changes {ra:?}, commit_all {rb:?}"),
            };
            let (ta, tb) = (
                wa.repo.find_commit(ca).unwrap().tree_id(),
                wb.repo.find_commit(cb).unwrap().tree_id(),
            );
            assert_eq!(ta, tb, "scenario {s}: committed trees differ");
            assert_eq!(
                git(&a, &["status", "--porcelain"]),
                git(&b, &["status", "--porcelain"]),
                "scenario {s}: status after commit"
            );
            // The metric leaves files behind; then the revert.
            for wt in [&a, &b] {
                write(&wt.join("src/d0/metric-out.txt"), "out\n");
                write(&wt.join("build/cache.o"), "ignored\n");
            }
            // `restore`, asserting that the fast path was taken.
            let refname = format!("refs/heads/{}", name_of(&a));
            wa.repo.reference(&refname, head, true, "t").unwrap();
            wa.repo.set_head(&refname).unwrap();
            // (Scenario 5: libgit2's checkout writes through the symlink the proposer left,
            // the check after the fast revert sees it and the full reset runs instead.)
            let fast = wa.fast_revert(head).unwrap();
            assert!(fast || s == 5, "scenario {s}: fast revert not taken");
            if !fast {
                wa.restore(name_of(&a), head).unwrap();
            }
            wb.restore_full(name_of(&b), head).unwrap();
            assert_eq!(
                snapshot(&a),
                snapshot(&b),
                "scenario {s}: trees after revert"
            );
            assert_eq!(
                git(&a, &["status", "--porcelain", "--ignored"]),
                git(&b, &["status", "--porcelain", "--ignored"]),
                "scenario {s}: status after revert"
            );
            if s == 5 {
                // libgit2's reset writes through the symlink the proposer left (both paths
                // alike, checked above): the tree is not clean afterwards.
                continue;
            }
            assert_eq!(
                git(&a, &["status", "--porcelain"]),
                "",
                "scenario {s}: clean after revert"
            );
            assert_eq!(
                wa.changes_since(head).unwrap(),
                vec![],
                "scenario {s}: no change after revert"
            );
        }
    }

    #[test]
    fn revert_of_a_proposer_commit_and_staged_changes() {
        let (_d, a, b, head) = twins();
        let (wa, wb) = (WorkTree::open(&a).unwrap(), WorkTree::open(&b).unwrap());
        for wt in [&a, &b] {
            write(&wt.join("src/d0/f0.txt"), "committed by the agent\n");
            git(wt, &["add", "-A"]);
            git(wt, &["commit", "-qm", "agent"]);
            write(&wt.join("src/d1/f1.txt"), "staged\n");
            git(wt, &["add", "-A"]);
            write(&wt.join("loose.txt"), "untracked\n");
        }
        wa.restore(name_of(&a), head).unwrap();
        wb.restore_full(name_of(&b), head).unwrap();
        assert_eq!(snapshot(&a), snapshot(&b));
        assert_eq!(
            git(&a, &["status", "--porcelain", "--ignored"]),
            git(&b, &["status", "--porcelain", "--ignored"])
        );
        assert_eq!(
            git(&a, &["rev-parse", "HEAD"]),
            git(&b, &["rev-parse", "HEAD"])
        );
    }

    #[test]
    fn kept_commit_leaves_a_clean_tree_for_the_next_scope_check() {
        let (_d, a, _b, head) = twins();
        let wa = WorkTree::open(&a).unwrap();
        let mut best = head;
        for i in 0..5 {
            write(
                &a.join(format!("src/d{}/f{i}.txt", i % 4)),
                &format!("keep {i}\n"),
            );
            let ch = wa.changes_since(best).unwrap();
            assert_eq!(ch.len(), 1, "{ch:?}");
            best = wa.commit_changes(&ch, "keep", best).unwrap();
            assert_eq!(git(&a, &["status", "--porcelain"]), "");
            assert!(wa.changes_since(best).unwrap().is_empty());
            // The stat walk finds at most the file just written (too recent to trust).
            let idx = fresh_index(&wa.repo).unwrap();
            let c = candidates(&wa.repo, &idx).unwrap();
            assert!(c.len() <= 1, "{c:?}");
        }
    }

    #[test]
    fn parallel_walk_on_a_big_index_matches_the_full_diff() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        write(&repo.join(".gitignore"), "build/\n*.log\n");
        for i in 0..PARALLEL_FROM + 500 {
            write(
                &repo.join(format!("src/d{}/e{}/f{i}.txt", i / 1000, (i / 50) % 20)),
                &format!("{i}\n"),
            );
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);
        let head = Oid::from_str(git(&repo, &["rev-parse", "HEAD"]).trim()).unwrap();
        let wt = WorkTree::open(&repo).unwrap();
        assert!(wt.changes_since(head).unwrap().is_empty());
        for s in [0usize, 1, 2, 3, 9] {
            let p = |x: &str| repo.join(x);
            match s {
                0 => write(&p("src/d3/e7/f3357.txt"), "changed\n"),
                1 => write(&p("src/d1/new/deep/x.txt"), "new\n"),
                2 => std::fs::remove_file(p("src/d0/e0/f10.txt")).unwrap(),
                3 => {
                    write(&p("build/x/y.o"), "ignored\n");
                    write(&p("src/d2/e1/z.log"), "ignored\n");
                }
                _ => std::fs::create_dir_all(p("src/d4/empty/deeper")).unwrap(),
            }
            let fast = wt.changes_since(head).unwrap();
            assert_eq!(fast, full_changes(&wt, head), "scenario {s}");
        }
        let all = wt.changes_since(head).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
    }

    #[test]
    fn tree_diff_on_changed_paths_matches_the_full_tree_diff() {
        let (_d, a, _b, head) = twins();
        let wt = WorkTree::open(&a).unwrap();
        let patch = |d: &git2::Diff| {
            let mut out = Vec::new();
            d.print(git2::DiffFormat::Patch, |_, _, l| {
                out.push((l.origin(), l.content().to_vec()));
                true
            })
            .unwrap();
            (
                out,
                d.stats().unwrap().files_changed(),
                d.stats().unwrap().insertions(),
            )
        };
        let mut prev = head;
        for s in [0usize, 1, 2, 4, 5, 6, 11] {
            change(&a, s);
            git(&a, &["add", "-A"]);
            git(&a, &["commit", "-qm", "step", "--allow-empty"]);
            let now = Oid::from_str(git(&a, &["rev-parse", "HEAD"]).trim()).unwrap();
            for (x, y) in [(prev, now), (now, prev), (head, now)] {
                let tx = wt.repo.find_commit(x).unwrap().tree().unwrap();
                let ty = wt.repo.find_commit(y).unwrap().tree().unwrap();
                let fast = wt.diff_trees(&tx, &ty).unwrap();
                let full = wt
                    .repo
                    .diff_tree_to_tree(Some(&tx), Some(&ty), None)
                    .unwrap();
                assert_eq!(patch(&fast), patch(&full), "scenario {s}");
            }
            prev = now;
        }
    }

    #[test]
    fn new_worktree_matches_libgit2s_checkout() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        for i in 0..PARALLEL_CHECKOUT_FROM + 100 {
            write(
                &repo.join(format!("src/d{}/e{}/f{i}.txt", i / 500, (i / 50) % 10)),
                &format!("{i}\n"),
            );
        }
        write(&repo.join("run.sh"), "#!/bin/sh\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("src/d0/e0/f0.txt", repo.join("link")).unwrap();
        write(&repo.join("a-b/x.txt"), "sorts around a/\n");
        write(&repo.join("a/y.txt"), "y\n");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);
        let head = Oid::from_str(git(&repo, &["rev-parse", "HEAD"]).trim()).unwrap();
        let r = Repository::open(&repo).unwrap();
        let (fast, slow) = (d.path().join("fast"), d.path().join("slow"));
        // The fast path through create_worktree; libgit2's own checkout for the other.
        r.branch("f", &r.find_commit(head).unwrap(), false).unwrap();
        assert!(
            add_worktree(
                &r,
                &super::super::worktree_name("f"),
                &fast,
                "refs/heads/f",
                head
            )
            .unwrap(),
            "fast path not taken"
        );
        r.branch("s", &r.find_commit(head).unwrap(), false).unwrap();
        let reference = r.find_reference("refs/heads/s").unwrap();
        let mut opts = git2::WorktreeAddOptions::new();
        opts.reference(Some(&reference));
        r.worktree(&super::super::worktree_name("s"), &slow, Some(&opts))
            .unwrap();
        assert_eq!(snapshot(&fast), snapshot(&slow));
        let entries = |p: &Path| {
            let wt = Repository::open(p).unwrap();
            let idx = wt.index().unwrap();
            idx.iter()
                .map(|e| (e.path, e.id, e.mode, e.file_size))
                .collect::<Vec<_>>()
        };
        assert_eq!(entries(&fast), entries(&slow));
        // The git CLI reads the index we wrote and finds the tree checked out, unchanged.
        assert_eq!(
            git(&fast, &["ls-files", "--stage"]),
            git(&slow, &["ls-files", "--stage"])
        );
        assert_eq!(git(&fast, &["status", "--porcelain"]), "");
        assert_eq!(git(&fast, &["status", "--porcelain", "--ignored"]), "");
        assert_eq!(git(&fast, &["symbolic-ref", "HEAD"]).trim(), "refs/heads/f");
        let admin = |n: &str, f: &str| {
            std::fs::read_to_string(repo.join(".git/worktrees").join(n).join(f)).unwrap()
        };
        for f in ["commondir", "gitdir", "HEAD"] {
            assert_eq!(
                admin("autoresearch-f", f)
                    .replace("/fast/", "/X/")
                    .replace("/f\n", "/X\n"),
                admin("autoresearch-s", f)
                    .replace("/slow/", "/X/")
                    .replace("/s\n", "/X\n"),
                "{f}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(fast.join(".git"))
                .unwrap()
                .replace("autoresearch-f", "X"),
            std::fs::read_to_string(slow.join(".git"))
                .unwrap()
                .replace("autoresearch-s", "X")
        );
        let wt = WorkTree::open(&fast).unwrap();
        assert!(wt.changes_since(head).unwrap().is_empty());
        // The stat data survived: the walk trusts (nearly) every entry.
        let c = candidates(&wt.repo, &fresh_index(&wt.repo).unwrap()).unwrap();
        assert!(
            c.len() < 500,
            "{} of 2100 entries without trusted stat data",
            c.len()
        );
        assert!(wt.is_clean().unwrap());
        assert!(r
            .find_worktree(&super::super::worktree_name("f"))
            .unwrap()
            .validate()
            .is_ok());
    }

    fn name_of(p: &Path) -> &str {
        p.file_name().unwrap().to_str().unwrap()
    }
}
