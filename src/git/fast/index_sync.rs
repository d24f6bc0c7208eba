//! The run's index: libgit2's in memory, written to disk by us (issue 20: libgit2's two
//! index writes per experiment were a fifth of the run's thread on a 10,000-file tree,
//! more than half of it in its collision-detecting SHA-1 over the whole file).
//!
//! libgit2 decides whether its in-memory index is current by comparing the file's checksum
//! with the last one it read or wrote itself, so after any write of ours it would read the
//! file again (and hash it again) at its next look. So the run keeps that check itself:
//! the checksum of its own last write ([`IndexState`]) against the file's last 20 bytes.
//! While they agree, the in-memory index is the file, and the diffs and the checkout are
//! given it explicitly (`diff_tree_to_index` + `diff_index_to_workdir`, a checkout without
//! refresh) so that libgit2 does not look. When they differ (an agent's `git add`, or a
//! write by libgit2 itself on a fallback path), libgit2's own check decides, as before.
//!
//! A write does what libgit2's does: entries not older than the index file being replaced
//! are compared with their files, and those that differ are smudged (size 0, in memory and
//! on disk), because once the new file is newer than them their stat data would look
//! clean; then the entries and a complete tree cache (from the tree objects, by tree id,
//! remembered between writes) are written with git's lock-and-rename.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use git2::{Index, ObjectType, Oid, Repository};

use super::super::WorkTree;
use super::index_file::{read_index, write_libgit2_index, IndexRead};
use super::walk::{candidates, candidates_of, git_mode};
use super::FnvBuild;

/// What the run knows about its index file (one per [`WorkTree`]).
#[derive(Default)]
pub(crate) struct IndexState {
    /// Whether libgit2 has loaded the index here (see `commit::paths_to_diff`).
    pub(super) loaded: Cell<bool>,
    /// The checksum of this work tree's last direct write of the index.
    written: Cell<Option<[u8; 20]>>,
    shapes: RefCell<Shapes>,
}

/// A folder of a tree, as the tree cache records it: the index entries below it, and its
/// subfolders in tree order.
struct Shape {
    entries: usize,
    subs: Vec<(Vec<u8>, Oid)>,
}

/// The shapes of the folders of the last tree written, by tree id (tree objects never
/// change, so a shape is valid for as long as it is kept).
type Shapes = HashMap<Oid, Shape, FnvBuild>;

impl WorkTree {
    /// The repository's index through libgit2: as it is in memory when the file is still
    /// this work tree's own last write, else re-read if it changed on disk.
    pub(crate) fn index(&self) -> Result<Index> {
        let state = &self.index_state;
        let ours = state.loaded.get()
            && state.written.get().is_some_and(|sum| {
                trailer(&self.repo.path().join("index")).map(|(s, _)| s) == Some(sum)
            });
        let loaded = self.repo.index().and_then(|mut index| {
            if !ours {
                index.read(false)?;
            }
            Ok(index)
        });
        let index = match loaded {
            Ok(index) => index,
            Err(e) if e.class() == git2::ErrorClass::Index => self.rebuild_index(&e)?,
            Err(e) => return Err(e.into()),
        };
        if !ours {
            state.written.set(None);
        }
        state.loaded.set(true);
        Ok(index)
    }

    /// An index nothing can read (a proposer or a metric overwrote it), rebuilt from HEAD's
    /// tree: it held nothing worth keeping, since what a run commits is the work tree. No
    /// stat data: the next walk compares every file's content once.
    fn rebuild_index(&self, e: &git2::Error) -> Result<Index> {
        let path = self.repo.path().join("index");
        tracing::warn!(
            "{}: unreadable ({}), rebuilt from HEAD",
            path.display(),
            e.message()
        );
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        let mut index = self.repo.index()?;
        // libgit2's read of a missing file keeps the entries it holds.
        index.clear()?;
        if let Ok(tree) = self.repo.head().and_then(|h| h.peel_to_tree()) {
            index.read_tree(&tree)?;
        }
        index.write()?;
        Ok(index)
    }

    /// Write `index` (this work tree's, from [`WorkTree::index`]) to disk, with its tree
    /// (computed here) in the tree cache. Returns the tree. libgit2's own write when the
    /// index holds what the direct write leaves out (see `write_libgit2_index`).
    pub(super) fn write_index(&self, index: &mut Index) -> Result<Oid> {
        let admin = self.repo.path();
        let tree = index.write_tree()?;
        let mut shapes = self.index_state.shapes.borrow_mut();
        let ext = tree_cache(&self.repo, tree, &mut shapes)?;
        let stamp = std::fs::metadata(admin.join("index"))
            .ok()
            .map(|md| (md.mtime(), md.mtime_nsec()));
        let mut smudged = Vec::new();
        let keep = index.len() >= REMEMBERED_FROM;
        let written = write_libgit2_index(admin, index, &ext, stamp, keep, |e| {
            let differs = differs_from_file(&self.path, e);
            if differs {
                smudged.push(e.path.clone());
            }
            differs
        })?;
        let Some((sum, entries)) = written else {
            index.write()?;
            self.index_state.written.set(None);
            return Ok(tree);
        };
        self.index_state.written.set(Some(sum));
        // The smudges in memory too: the next write must keep them.
        for p in smudged {
            let path = Path::new(OsStr::from_bytes(&p));
            if let Some(mut e) = index.get_path(path, 0) {
                e.file_size = 0;
                index.add(&e)?;
            }
        }
        if let Ok(md) = std::fs::metadata(admin.join("index")) {
            let mtime = (md.mtime(), md.mtime_nsec());
            let root = Some(tree);
            remember(
                &self.path,
                sum,
                IndexRead {
                    entries,
                    root,
                    mtime,
                },
            );
        }
        Ok(tree)
    }

    /// The index file as a walk needs it: as this daemon last wrote it when it still is
    /// that write, else read.
    pub(super) fn index_read(&self) -> Option<Arc<IndexRead>> {
        let path = self.repo.path().join("index");
        written_index(&self.path, &path).or_else(|| read_index(&path).map(Arc::new))
    }

    /// The stat walk's candidates against `index` (this work tree's, current: from
    /// [`WorkTree::index`], which has just compared the file's checksum with this work
    /// tree's last write), from the entries as written when it is that write (libgit2's
    /// would be copied out one by one).
    pub(super) fn candidates_in(&self, index: &Index) -> Option<Vec<Vec<u8>>> {
        let kept = self
            .index_state
            .written
            .get()
            .and_then(|sum| remembered(&self.path, sum));
        match kept {
            Some(read) => candidates_of(&self.repo, &read.entries, read.mtime),
            None => candidates(&self.repo, index),
        }
    }
}

/// The last 20 bytes of the file at `path` (an index's checksum), and its mtime.
fn trailer(path: &Path) -> Option<([u8; 20], (i64, i64))> {
    let f = std::fs::File::open(path).ok()?;
    let md = f.metadata().ok()?;
    let mut sum = [0u8; 20];
    f.read_exact_at(&mut sum, md.len().checked_sub(20)?).ok()?;
    Some((sum, (md.mtime(), md.mtime_nsec())))
}

/// The index files this daemon's runs wrote last, by work tree, as the walks need them: a
/// fresh repository's walk (the guard rails' after each metric run) would read, hash and
/// parse the file again. Only indexes of at least 4,096 entries, where that costs a
/// millisecond or more (an entry kept costs ~130 bytes: 32 runs on 1,000-file trees took
/// 4.7 MiB more), and at most 64 work trees and 400,000 entries in all (~50 MB), the oldest
/// forgotten first.
static WRITTEN: Mutex<Vec<Written>> = Mutex::new(Vec::new());

struct Written {
    workdir: PathBuf,
    sum: [u8; 20],
    read: Arc<IndexRead>,
}

fn written() -> std::sync::MutexGuard<'static, Vec<Written>> {
    WRITTEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The index of the work tree at `workdir` (its file at `path`) as this daemon last wrote
/// it, if the file is still that write: the same checksum and mtime.
fn written_index(workdir: &Path, path: &Path) -> Option<Arc<IndexRead>> {
    let (sum, mtime) = trailer(path)?;
    remembered(workdir, sum).filter(|read| read.mtime == mtime)
}

/// The entries remembered of the write of the work tree at `workdir` whose checksum is
/// `sum`.
fn remembered(workdir: &Path, sum: [u8; 20]) -> Option<Arc<IndexRead>> {
    let all = written();
    let w = all.iter().find(|w| w.workdir == workdir && w.sum == sum)?;
    Some(w.read.clone())
}

/// The smallest index [`remember`] keeps (see [`WRITTEN`]).
const REMEMBERED_FROM: usize = if cfg!(test) { 1 } else { 4096 };

fn remember(workdir: &Path, sum: [u8; 20], read: IndexRead) {
    const TREES: usize = 64;
    const ENTRIES: usize = 400_000;
    let mut all = written();
    all.retain(|w| w.workdir != workdir);
    if read.entries.len() < REMEMBERED_FROM {
        return;
    }
    all.push(Written {
        workdir: workdir.to_path_buf(),
        sum,
        read: Arc::new(read),
    });
    while all.len() > TREES || all.iter().map(|w| w.read.entries.len()).sum::<usize>() > ENTRIES {
        all.remove(0);
    }
}

/// Forget what was written for the work tree at `workdir` (its run has ended, or it is
/// being removed).
pub(super) fn forget(workdir: &Path) {
    written().retain(|w| w.workdir != workdir);
}

/// Whether the file of entry `e` in the work tree at `workdir` is not what the entry
/// records: its kind, its mode or its content (hashed as stored, without filters, so a
/// file that filters change counts as differing: a smudge too many costs a content check).
fn differs_from_file(workdir: &Path, e: &git2::IndexEntry) -> bool {
    let path = workdir.join(OsStr::from_bytes(&e.path));
    let Ok(md) = std::fs::symlink_metadata(&path) else {
        return true;
    };
    let Some(mode) = git_mode(md.mode()) else {
        return true;
    };
    let id = if md.file_type().is_symlink() {
        let target = std::fs::read_link(&path).ok();
        target.and_then(|t| Oid::hash_object(ObjectType::Blob, t.as_os_str().as_bytes()).ok())
    } else {
        Oid::hash_file(ObjectType::Blob, &path).ok()
    };
    mode != e.mode || id != Some(e.id)
}

/// The tree cache extension's data for `root` (git's `cache-tree` format, complete and
/// valid, subfolders in tree order as libgit2 writes them), with the folder shapes
/// remembered in `shapes`: only the folders new since the last write are read. `shapes`
/// keeps this tree's folders only.
fn tree_cache(repo: &Repository, root: Oid, shapes: &mut Shapes) -> Result<Vec<u8>> {
    let mut old = std::mem::take(shapes);
    learn(repo, root, &mut old, shapes)?;
    let mut out = Vec::with_capacity(shapes.len() * 40);
    push_node(&mut out, b"", root, shapes);
    Ok(out)
}

/// Move the shape of tree `id` and of its subfolders from `old` to `new`, reading the trees
/// `old` does not hold. Returns the index entries below `id`.
fn learn(repo: &Repository, id: Oid, old: &mut Shapes, new: &mut Shapes) -> Result<usize> {
    if let Some(s) = new.get(&id) {
        return Ok(s.entries); // the same folder in two places
    }
    let shape = match old.remove(&id) {
        Some(s) => {
            for (_, sub) in &s.subs {
                learn(repo, *sub, old, new)?;
            }
            s
        }
        None => {
            let tree = repo.find_tree(id)?;
            let mut entries = 0;
            let mut subs = Vec::new();
            for e in tree.iter() {
                match e.kind() {
                    Some(ObjectType::Tree) => subs.push((e.name_bytes().to_vec(), e.id())),
                    _ => entries += 1, // a file, a symlink or a submodule: one entry each
                }
            }
            for (_, sub) in &subs {
                entries += learn(repo, *sub, old, new)?;
            }
            Shape { entries, subs }
        }
    };
    let entries = shape.entries;
    new.insert(id, shape);
    Ok(entries)
}

/// Tree `id`'s node of the tree cache, named `name`, and its subfolders' after it.
fn push_node(out: &mut Vec<u8>, name: &[u8], id: Oid, shapes: &Shapes) {
    let s = &shapes[&id];
    out.extend_from_slice(name);
    out.push(0);
    out.extend_from_slice(format!("{} {}\n", s.entries, s.subs.len()).as_bytes());
    out.extend_from_slice(id.as_bytes());
    for (name, sub) in &s.subs {
        push_node(out, name, *sub, shapes);
    }
}

#[cfg(test)]
mod tests {
    use super::super::index_file::read_index;
    use super::*;
    use crate::git::fast::test_util::*;

    /// The index file's bytes, and what libgit2 writes for the same index in memory. The
    /// entries remembered of the write first: they are the file's.
    fn ours_and_libgit2s(wt: &WorkTree) -> (Vec<u8>, Vec<u8>) {
        let path = wt.repo.path().join("index");
        let kept = written_index(&wt.path, &path).expect("the write is remembered");
        let read = read_index(&path).unwrap();
        let key = |e: &git2::IndexEntry| {
            let t = |t: git2::IndexTime| (t.seconds(), t.nanoseconds());
            (
                e.path.clone(),
                e.id,
                e.mode,
                e.file_size,
                t(e.mtime),
                t(e.ctime),
                e.ino,
            )
        };
        let keys = |r: &IndexRead| r.entries.iter().map(key).collect::<Vec<_>>();
        assert_eq!(keys(&kept), keys(&read));
        assert_eq!((kept.root, kept.mtime), (read.root, read.mtime));
        let ours = std::fs::read(&path).unwrap();
        let mut index = wt.index().unwrap();
        index.write().unwrap();
        (ours, std::fs::read(&path).unwrap())
    }

    #[test]
    fn the_direct_write_is_libgit2s_byte_for_byte_and_git_reads_it() {
        let (_d, a, _b, head) = twins();
        let wt = WorkTree::open(&a).unwrap();
        let branch = name_of(&a);
        // Changes kept and reverted in turn (folders added, a file deleted, a mode, a
        // symlink, a file turned folder), each on top of the last kept: the folder shapes
        // are remembered between writes.
        for (s, keep) in [
            (1, true),
            (2, false),
            (4, false),
            (5, true),
            (0, true),
            (6, false),
        ] {
            let parent = wt.repo.head().unwrap().target().unwrap();
            change(&a, s);
            let changes = wt.changes_since(parent).unwrap();
            let commit = wt.commit_changes(&changes, "experiment", parent).unwrap();
            assert!(
                wt.index_state.written.get().is_some(),
                "scenario {s}: the commit wrote the index directly"
            );
            let (ours, theirs) = ours_and_libgit2s(&wt);
            assert!(ours == theirs, "scenario {s}: the commit's index differs");
            // git reads it: nothing staged or changed, and its tree cache is the commit's.
            assert_eq!(git(&a, &["status", "--porcelain"]), "", "scenario {s}");
            let tree = wt.repo.find_commit(commit).unwrap().tree_id().to_string();
            assert_eq!(git(&a, &["write-tree"]).trim(), tree, "scenario {s}");
            if !keep {
                wt.restore_from(branch, parent, None).unwrap();
                assert!(wt.index_state.written.get().is_some(), "scenario {s}");
                let (ours, theirs) = ours_and_libgit2s(&wt);
                assert!(ours == theirs, "scenario {s}: the revert's index differs");
                assert_eq!(git(&a, &["status", "--porcelain"]), "", "scenario {s}");
            }
        }
        assert_ne!(wt.repo.head().unwrap().target().unwrap(), head);
    }

    #[test]
    fn a_write_by_git_itself_is_read_again() {
        let (_d, a, _b, head) = twins();
        let wt = WorkTree::open(&a).unwrap();
        change(&a, 0);
        let changes = wt.changes_since(head).unwrap();
        let commit = wt.commit_changes(&changes, "experiment", head).unwrap();
        assert!(wt.index_state.written.get().is_some());
        // The proposer stages a file and unstages another with git.
        write(&a.join("src/d2/staged.txt"), "staged\n");
        git(&a, &["add", "src/d2/staged.txt"]);
        git(&a, &["rm", "-q", "--cached", "src/d3/f3.txt"]);
        let index_path = wt.repo.path().join("index");
        assert!(
            written_index(&wt.path, &index_path).is_none(),
            "not ours any more"
        );
        let index = wt.index().unwrap();
        assert!(index.get_path(Path::new("src/d2/staged.txt"), 0).is_some());
        assert!(index.get_path(Path::new("src/d3/f3.txt"), 0).is_none());
        let changes: Vec<_> = wt
            .changes_since(commit)
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        assert_eq!(
            changes,
            full_changes(&wt, commit)
                .into_iter()
                .map(|c| (c.path, c.kind))
                .collect::<Vec<_>>()
        );
        assert!(
            changes.iter().any(|(p, _)| p == "src/d2/staged.txt"),
            "{changes:?}"
        );
        // What the direct write leaves out (an intent-to-add entry) libgit2 writes.
        write(&a.join("src/d2/ita.txt"), "ita\n");
        git(&a, &["add", "-N", "src/d2/ita.txt"]);
        let mut index = wt.index().unwrap();
        wt.write_index(&mut index).unwrap();
        assert!(wt.index_state.written.get().is_none());
        let status = git(&a, &["status", "--porcelain"]);
        assert!(status.contains(" A src/d2/ita.txt"), "{status}");
    }

    #[test]
    fn racy_entries_that_differ_from_their_files_are_smudged() {
        let (_d, a, _b, head) = twins();
        let wt = WorkTree::open(&a).unwrap();
        change(&a, 0);
        let changes = wt.changes_since(head).unwrap();
        wt.commit_changes(&changes, "experiment", head).unwrap();
        // Two files staged after that write (so not older than it); one of them then
        // changes again within its recorded mtime and size, as in one clock tick.
        let (same, edited) = ("src/d2/f2.txt", "src/d3/f3.txt");
        write(&a.join(same), "FILE 2\n");
        write(&a.join(edited), "FILE 3\n");
        let mut index = wt.index().unwrap();
        index.add_path(Path::new(same)).unwrap();
        index.add_path(Path::new(edited)).unwrap();
        let before = std::fs::metadata(a.join(edited)).unwrap();
        std::fs::write(a.join(edited), "file 3!\n").unwrap();
        let times = std::fs::FileTimes::new().set_modified(before.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(a.join(edited))
            .unwrap()
            .set_times(times)
            .unwrap();
        wt.write_index(&mut index).unwrap();
        let size = |entries: &[git2::IndexEntry], p: &str| {
            entries
                .iter()
                .find(|e| e.path == p.as_bytes())
                .unwrap()
                .file_size
        };
        let on_disk = read_index(&wt.repo.path().join("index")).unwrap().entries;
        assert_eq!(size(&on_disk, edited), 0, "smudged on disk");
        assert_eq!(size(&on_disk, same), 7, "unchanged: kept");
        let in_memory: Vec<_> = wt.index().unwrap().iter().collect();
        assert_eq!(size(&in_memory, edited), 0, "smudged in memory");
        // The next write, newer than the entry, keeps the smudge: git sees the change.
        let mut index = wt.index().unwrap();
        wt.write_index(&mut index).unwrap();
        let on_disk = read_index(&wt.repo.path().join("index")).unwrap().entries;
        assert_eq!(size(&on_disk, edited), 0);
        assert!(git(&a, &["status", "--porcelain"]).contains(&format!("MM {edited}")));
    }
}
