//! The stat-only walk of a work tree against its index ([`candidates`]): each folder's
//! listing (read again only when the folder changed, see `listing`) + `fstatat` relative to
//! the open folder, compared with the index's stat data, on a few threads for big indexes.
//! What makes the scope check and the revert cheap: libgit2 then diffs only the paths this
//! walk lists.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::{Index, IndexEntry, IndexEntryExtendedFlag, Repository};

use super::listing::{self, Handles, Key, Listing, Listings};
use super::{worker_threads, FnvBuild};

pub(super) const GITLINK: u32 = 0o160000;

/// Paths of the work tree that may differ from the index — modified (stat data differs, or
/// too recent to tell), deleted, untracked (ignored ones are left to libgit2 to filter,
/// except whole ignored folders, which are not entered), type changes — found by a stat-only
/// walk. A superset of what libgit2's index-to-workdir diff reports. None when the index
/// or the work tree holds something this walk does not handle; the caller then uses
/// libgit2's full walk.
pub(crate) fn candidates(repo: &Repository, index: &Index) -> Option<Vec<Vec<u8>>> {
    let stamp = std::fs::metadata(repo.path().join("index")).ok()?;
    let entries: Vec<IndexEntry> = index.iter().collect();
    candidates_of(repo, &entries, (stamp.mtime(), stamp.mtime_nsec()))
}

/// [`candidates`] for `entries` of an index file written at `index_time` (its mtime).
pub(super) fn candidates_of(
    repo: &Repository,
    entries: &[IndexEntry],
    index_time: (i64, i64),
) -> Option<Vec<Vec<u8>>> {
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
    let (dirs, files) = folders(entries)?;
    let root: OwnedFd = std::fs::File::open(&workdir).ok()?.into();
    let mut listings = listing::take(&workdir);
    let walk = Walk {
        root: &root,
        dirs: &dirs,
        files: &files,
        entries,
        index_time,
        listings: &listings,
        began: listing::now(),
    };
    let mut found = walk.tracked().and_then(|f| walk.untracked(repo, f));
    if let Some(f) = &mut found {
        listings.update(std::mem::take(&mut f.read));
    }
    listing::put(&workdir, listings);
    let found = found?;
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

/// Per folder: its files' names and index entries, sorted by name.
type Files<'a> = Vec<Vec<(&'a [u8], usize)>>;

/// Every folder holding index entries (and its parents, and the root) → its slot in the
/// files by folder. None for entries the walk does not handle (conflicts, intent-to-add,
/// skip-worktree, submodules).
fn folders(entries: &[IndexEntry]) -> Option<(Dirs<'_>, Files<'_>)> {
    // Folder → its files (name, entry), in name order: the index is sorted by path, so the
    // files of one folder come in name order, and consecutive entries mostly share a folder.
    let mut dirs: Dirs =
        HashMap::with_capacity_and_hasher(entries.len() / 8 + 1, FnvBuild::default());
    let odd = IndexEntryExtendedFlag::INTENT_TO_ADD | IndexEntryExtendedFlag::SKIP_WORKTREE;
    let mut last: Option<(&[u8], usize)> = None;
    let mut files: Files = Vec::new();
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
    Some((dirs, files))
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
    /// The folders' listings from earlier walks (see `listing`).
    listings: &'a Listings,
    /// When the walk began: a listing read since is kept if its folder settled before.
    began: (i64, i64),
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
    /// Folders read (not remembered, or changed) whose listing is worth remembering.
    read: Vec<(Vec<u8>, Listing)>,
}

/// A folder to list: its path relative to the work tree, and the handle its parent's
/// listing holds on it (-1: none, it is opened by its path).
type Job = (Vec<u8>, RawFd);

/// An open folder (by fd: its files are stat'ed relative to it), opened by the walk or a
/// listing's handle.
struct Folder {
    fd: RawFd,
    _opened: Option<OwnedFd>,
}

impl Folder {
    /// The folder `rel` of a job: through its handle, or opened.
    fn of(root: &OwnedFd, (rel, handle): (&[u8], RawFd)) -> Option<Folder> {
        if handle >= 0 {
            return Some(Folder {
                fd: handle,
                _opened: None,
            });
        }
        Folder::open(root, rel)
    }

    /// `rel` opened relative to `root` (not following a symlink in its last component).
    fn open(root: &OwnedFd, rel: &[u8]) -> Option<Folder> {
        let path = CString::new(if rel.is_empty() { &b"."[..] } else { rel }).ok()?;
        // SAFETY: openat on a valid fd with a NUL-terminated path.
        let fd = unsafe {
            libc::openat(
                root.as_raw_fd(),
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        // SAFETY: a new fd, ours alone.
        (fd >= 0).then(|| Folder {
            fd,
            _opened: Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        })
    }

    /// The folder's own stat data.
    fn key(&self) -> Option<Key> {
        // SAFETY: stat64 is plain data; fstat64 fills it for our open fd.
        unsafe {
            let mut st: libc::stat64 = std::mem::zeroed();
            (libc::fstat64(self.fd, &mut st) == 0).then(|| Key::of(&st))
        }
    }

    /// lstat of an entry of this folder (no path walk, symlinks not followed).
    fn stat(&self, name: &CStr) -> Option<libc::stat64> {
        // SAFETY: stat64 is plain data; fstatat64 fills it for a name in our open folder.
        unsafe {
            let mut st: libc::stat64 = std::mem::zeroed();
            let r = libc::fstatat64(self.fd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW);
            (r == 0).then_some(st)
        }
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
            let mut stack = vec![(Vec::new(), -1)];
            while let Some((rel, handle)) = stack.pop() {
                if !self.dir((&rel, handle), &mut found, &mut stack) {
                    return None;
                }
            }
            return Some(found);
        }
        // A shared stack of folders; a worker ends when it is empty and nobody is busy.
        let queue = std::sync::Mutex::new((vec![(Vec::new(), -1)], 0usize));
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
                let Some((rel, handle)) = job else {
                    wake.notify_all();
                    return found;
                };
                let mut next = Vec::new();
                if !failed.load(std::sync::atomic::Ordering::Relaxed)
                    && !self.dir((&rel, handle), &mut found, &mut next)
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
                all.read.extend(p.read);
            }
        });
        (!failed.into_inner()).then_some(all)
    }

    /// The untracked folders `found` lists, one by one: libgit2 does not enter an ignored
    /// one either.
    fn untracked(&self, repo: &Repository, mut found: Found) -> Option<Found> {
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
            if !self.dir((&rel, -1), &mut found, &mut next) {
                return None;
            }
            debug_assert!(next.is_empty(), "no tracked folder under an untracked one");
        }
        Some(found)
    }

    /// One folder: files compared with their index entries, tracked subfolders pushed to
    /// `next`, untracked ones to `found.untracked_dirs`. False: something this walk does
    /// not handle (unreadable folder or entry, nested repository).
    fn dir(&self, job: (&[u8], RawFd), found: &mut Found, next: &mut Vec<Job>) -> bool {
        let rel = job.0;
        let Some(dir) = Folder::of(self.root, job) else {
            return false;
        };
        let Some(key) = dir.key() else {
            return false;
        };
        // Read only when not remembered (or changed since).
        if let Some(l) = self.listings.get(rel, key) {
            return self.entries_of(rel, &dir, l, None, found, next);
        }
        let Some(mut l) = Listing::read(dir.fd, key) else {
            return false;
        };
        // A listing worth keeping gets handles on its tracked files and folders.
        let mut handles = l.settled(self.began).then(Handles::default);
        let ok = self.entries_of(rel, &dir, &l, handles.as_mut(), found, next);
        if let Some(h) = handles {
            // Kept even when the walk fails: queued folders may hold its handles until the
            // walk's end, where a failed walk's listings are dropped.
            l.handles = h;
            found.read.push((rel.to_vec(), l));
        }
        ok
    }

    /// The entries of folder `rel` (open as `dir`, listed in `list`): see [`Walk::dir`].
    /// Tracked files are stat'ed, and tracked folders listed, through the listing's handles,
    /// or through new ones opened into `new_handles` (a fresh listing that will be
    /// remembered).
    fn entries_of(
        &self,
        rel: &[u8],
        dir: &Folder,
        list: &Listing,
        mut new_handles: Option<&mut Handles>,
        found: &mut Found,
        next: &mut Vec<Job>,
    ) -> bool {
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
        for (k, (with_nul, d_type)) in list.entries().enumerate() {
            let Ok(name) = CStr::from_bytes_with_nul(with_nul) else {
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
                    let h = handle(list, new_handles.as_deref_mut(), (k, name), dir, true);
                    next.push((r.clone(), h.unwrap_or(-1)));
                } else {
                    found.untracked_dirs.push(r.clone());
                }
            } else {
                match lookup(bytes) {
                    Some(i) => {
                        found.seen.push(i);
                        let h = handle(list, new_handles.as_deref_mut(), (k, name), dir, false);
                        let st = st
                            .or_else(|| h.and_then(listing::fstat))
                            .or_else(|| dir.stat(name));
                        let Some(st) = st else {
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

/// The handle on entry `k` (`name`) of `list` in `dir`: the remembered one, or one opened now
/// into `new` (the handles of a fresh listing that will be remembered).
fn handle(
    list: &Listing,
    new: Option<&mut Handles>,
    (k, name): (usize, &CStr),
    dir: &Folder,
    folder: bool,
) -> Option<RawFd> {
    match new {
        Some(h) => h.open(k, dir.fd, name, folder),
        None => list.handles.get(k),
    }
}

/// Does the file look exactly as the index entry recorded it, and was it recorded long
/// enough before the index was written to trust that?
fn same_stat(e: &IndexEntry, st: &libc::stat64, index_time: (i64, i64)) -> bool {
    let Some(mode) = git_mode(st.st_mode) else {
        return false;
    };
    e.mode == mode
        && !racy(e, index_time)
        && e.file_size == st.st_size as u32
        && e.mtime.seconds() == st.st_mtime as i32
        && e.mtime.nanoseconds() == st.st_mtime_nsec as u32
        && e.ctime.seconds() == st.st_ctime as i32
        && e.ctime.nanoseconds() == st.st_ctime_nsec as u32
        && e.ino == st.st_ino as u32
}

/// The index's mode for a file of `st_mode`: a file (executable or not) or a symlink.
pub(super) fn git_mode(st_mode: u32) -> Option<u32> {
    match st_mode & libc::S_IFMT {
        libc::S_IFREG if st_mode & 0o100 != 0 => Some(0o100755),
        libc::S_IFREG => Some(0o100644),
        libc::S_IFLNK => Some(0o120000),
        _ => None,
    }
}

/// Whether entry `e` was recorded too close to an index written at `index_time` to trust
/// its stat data (git's and libgit2's racy entries).
pub(super) fn racy(e: &IndexEntry, index_time: (i64, i64)) -> bool {
    (e.mtime.seconds() as i64, e.mtime.nanoseconds() as i64) >= index_time
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fast::test_util::*;
    use crate::git::WorkTree;
    use git2::Oid;

    /// Wait (polling, with a deadline) until every folder of `wt` has settled for the
    /// test's margin, then walk once so that their listings are remembered.
    fn remember_listings(wt: &WorkTree, head: Oid, margin: std::time::Duration) {
        fn latest(p: &Path, t: &mut (i64, i64)) {
            let md = std::fs::symlink_metadata(p).unwrap();
            *t = (*t)
                .max((md.ctime(), md.ctime_nsec()))
                .max((md.mtime(), md.mtime_nsec()));
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() && e.file_name() != ".git" {
                    latest(&e.path(), t);
                }
            }
        }
        let mut t = (0, 0);
        latest(&wt.path, &mut t);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let m = margin.as_nanos() as i64;
        let ready = (t.0 + (t.1 + m) / 1_000_000_000, (t.1 + m) % 1_000_000_000);
        while listing::now() <= ready {
            assert!(
                std::time::Instant::now() < deadline,
                "the clock does not move"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        wt.changes_since(head).unwrap();
    }

    #[test]
    fn remembered_listings_serve_the_walk_and_every_change_is_still_seen() {
        let margin = std::time::Duration::from_millis(50);
        listing::TEST_MARGIN.with(|m| m.set(Some(margin)));
        // Every kind of change a proposer can make, on a tree whose listings are remembered.
        for s in 0..SCENARIOS {
            let (_d, a, _b, head) = twins();
            let wa = WorkTree::open(&a).unwrap();
            remember_listings(&wa, head, margin);
            assert!(
                listing::take(&a).remembered() >= 6,
                "scenario {s}: remembered"
            );
            remember_listings(&wa, head, margin);
            change(&a, s);
            let fast = wa.changes_since(head).unwrap();
            assert_eq!(fast, full_changes(&wa, head), "scenario {s}");
        }
        // A hostile child adds a file, then sets the folder's times back: the ctime moves.
        let (_d, a, _b, head) = twins();
        let wa = WorkTree::open(&a).unwrap();
        remember_listings(&wa, head, margin);
        let dir = a.join("src/d1");
        let before = std::fs::metadata(&dir).unwrap();
        write(&dir.join("sneaky.txt"), "x\n");
        set_times(&dir, &before);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().mtime_nsec(),
            before.mtime_nsec()
        );
        let fast = wa.changes_since(head).unwrap();
        assert_eq!(fast, full_changes(&wa, head));
        assert!(
            fast.iter().any(|c| c.path == "src/d1/sneaky.txt"),
            "{fast:?}"
        );
        // And the walk does trust a remembered listing whose key holds: one made to miss a
        // file hides it (which is why only the folder's own stat data may vouch for it).
        write(&a.join("src/d2/hidden.txt"), "x\n");
        remember_listings(&wa, head, margin);
        let mut l = listing::take(&a);
        l.forget_name(b"src/d2", b"hidden.txt");
        listing::put(&a, l);
        let fast = wa.changes_since(head).unwrap();
        assert!(
            !fast.iter().any(|c| c.path == "src/d2/hidden.txt"),
            "{fast:?}"
        );
        listing::TEST_MARGIN.with(|m| m.set(None));
    }

    /// Edit `path` in place (same size), then set its times back as a hostile child would:
    /// only the ctime tells.
    fn edit_keeping_times(path: &Path) {
        let before = std::fs::symlink_metadata(path).unwrap();
        std::fs::write(path, "Z".repeat(before.len() as usize)).unwrap();
        set_times(path, &before);
    }

    /// Set `path`'s access and modification times back to those of `before`.
    fn set_times(path: &Path, before: &std::fs::Metadata) {
        let times = [
            libc::timespec {
                tv_sec: before.atime(),
                tv_nsec: before.atime_nsec(),
            },
            libc::timespec {
                tv_sec: before.mtime(),
                tv_nsec: before.mtime_nsec(),
            },
        ];
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path and two timespecs.
        assert_eq!(
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
            0
        );
    }

    /// How many files git tracks in the work tree at `wt`, and folders holding them.
    fn tracked_files_and_folders(wt: &Path) -> usize {
        let files = git(wt, &["ls-files"]);
        let mut folders = std::collections::BTreeSet::new();
        for f in files.lines() {
            let mut p = Path::new(f);
            while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                folders.insert(parent.to_path_buf());
                p = parent;
            }
        }
        files.lines().count() + folders.len()
    }

    #[test]
    fn handles_on_remembered_files_see_every_change_to_them() {
        let margin = std::time::Duration::from_millis(50);
        listing::TEST_MARGIN.with(|m| m.set(Some(margin)));
        let (d, a, _b, head) = twins();
        let wa = WorkTree::open(&a).unwrap();
        remember_listings(&wa, head, margin);
        remember_listings(&wa, head, margin);
        let l = listing::take(&a);
        let tracked = tracked_files_and_folders(&a);
        assert_eq!(
            l.handles(),
            tracked,
            "handles on every tracked file and folder"
        );
        listing::put(&a, l);
        // Through a hard link made outside the tree: the same inode as the handle's.
        let outside = d.path().join("outside-link");
        std::fs::hard_link(a.join("src/d0/f0.txt"), &outside).unwrap();
        std::fs::write(&outside, "written through the link\n").unwrap();
        // In place with the old size and times put back.
        edit_keeping_times(&a.join("src/d1/f1.txt"));
        // Replaced by a new file (a new inode: the folder changes).
        write(&a.join("src/d2/f2.txt.tmp"), "replaced\n");
        std::fs::rename(a.join("src/d2/f2.txt.tmp"), a.join("src/d2/f2.txt")).unwrap();
        // A whole folder swapped for an edited copy (its parent changes).
        let copy = d.path().join("d3-copy");
        std::fs::create_dir(&copy).unwrap();
        for e in std::fs::read_dir(a.join("src/d3")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
        write(&copy.join("f3.txt"), "in the swapped folder\n");
        std::fs::rename(a.join("src/d3"), d.path().join("d3-old")).unwrap();
        std::fs::rename(&copy, a.join("src/d3")).unwrap();
        let fast = wa.changes_since(head).unwrap();
        assert_eq!(fast, full_changes(&wa, head));
        for p in [
            "src/d0/f0.txt",
            "src/d1/f1.txt",
            "src/d2/f2.txt",
            "src/d3/f3.txt",
        ] {
            assert!(fast.iter().any(|c| c.path == p), "{p}: {fast:?}");
        }
        // The walk does stat through the handle: one pointing at another file makes an
        // untouched file a candidate.
        let (_d2, c, _b2, head_c) = twins();
        let wc = WorkTree::open(&c).unwrap();
        remember_listings(&wc, head_c, margin);
        // An index written after the files settled: none of them racy.
        git(&c, &["update-index", "--refresh", "--force-write-index"]);
        remember_listings(&wc, head_c, margin);
        let walked = || {
            let index = wc.index().unwrap();
            candidates(&wc.repo, &index).unwrap()
        };
        let f3 = b"src/d3/f3.txt".to_vec();
        assert!(!walked().contains(&f3), "{:?}", walked());
        let mut l = listing::take(&c);
        l.swap_handle(b"src/d3", b"f3.txt", &c.join("src/d0/f0.txt"));
        listing::put(&c, l);
        assert!(walked().contains(&f3));
        // And a folder's: src/d3 listed through a handle on src/d0 shows d0's files there.
        let mut l = listing::take(&c);
        l.swap_handle(b"src", b"d3", &c.join("src/d0"));
        listing::put(&c, l);
        assert!(
            walked().contains(&b"src/d3/f0.txt".to_vec()),
            "{:?}",
            walked()
        );
        // Forgetting a work tree closes its handles.
        let l = listing::take(&c);
        let open: Vec<(i32, std::path::PathBuf)> = l
            .handle_fds()
            .into_iter()
            .map(|fd| {
                (
                    fd,
                    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap(),
                )
            })
            .collect();
        assert!(open.len() > tracked / 2, "{open:?}");
        listing::put(&c, l);
        crate::git::forget_walk_state(&c);
        for (fd, target) in open {
            // (Another test may reuse the number, never for this tree's file.)
            let now = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
            assert_ne!(now, Some(target), "fd {fd} still open");
        }
        listing::TEST_MARGIN.with(|m| m.set(None));
    }

    #[test]
    fn parallel_walk_on_a_big_index_matches_the_full_diff() {
        let (_d, repo) = empty_repo("repo");
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
}
