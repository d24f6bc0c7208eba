//! The stat-only walk of a work tree against its index ([`candidates`]): `read_dir` +
//! `fstatat` relative to each open folder, compared with the index's stat data, on a few
//! threads for big indexes. What makes the scope check and the revert cheap: libgit2 then
//! diffs only the paths this walk lists.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::{Index, IndexEntry, IndexEntryExtendedFlag, Repository};

use super::{worker_threads, FnvBuild};

const GITLINK: u32 = 0o160000;

/// Paths of the work tree that may differ from the index — modified (stat data differs, or
/// too recent to tell), deleted, untracked (ignored ones are left to libgit2 to filter,
/// except whole ignored folders, which are not entered), type changes — found by a stat-only
/// walk. A superset of what libgit2's index-to-workdir diff reports. None when the index
/// or the work tree holds something this walk does not handle; the caller then uses
/// libgit2's full walk.
pub(crate) fn candidates(repo: &Repository, index: &Index) -> Option<Vec<Vec<u8>>> {
    let stamp = std::fs::metadata(repo.path().join("index")).ok()?;
    candidates_of(
        repo,
        index.iter().collect(),
        (stamp.mtime(), stamp.mtime_nsec()),
    )
}

/// [`candidates`] for `entries` of an index file written at `index_time` (its mtime).
pub(super) fn candidates_of(
    repo: &Repository,
    entries: Vec<IndexEntry>,
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
    let (dirs, files) = folders(&entries)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fast::test_util::*;
    use crate::git::WorkTree;
    use git2::Oid;

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
