//! Folder listings remembered between the stat walks of a work tree, so that a walk reads
//! only the folders that changed (what git's untracked cache does, keyed on what a child
//! cannot forge).
//!
//! A folder's names change only together with its ctime: creating, removing or renaming an
//! entry sets the folder's mtime and ctime to now, and no process can set a ctime back
//! (`utimensat` sets it to now; only moving the system clock could, which needs a privilege
//! no confined child has). So a listing read while the folder (same device and inode) had
//! ctime C is still its listing while it has ctime C — unless a change came in the same
//! timestamp tick right after the read. A listing is therefore kept only when C lies more
//! than a margin above the file system's timestamp granularity before the read began
//! ([`SETTLED`]: 50 ms, five clock ticks at the slowest kernel tick rate; [`SETTLED_COARSE`]
//! when the times carry no nanoseconds, as on file systems that keep whole seconds); a
//! folder changed more recently is read again by each walk until it has settled.
//!
//! The walk still stats every tracked file (a file's content changes without its folder);
//! it skips only `getdents`, which was ~11% of the loop's CPU at 10,000 files on tmpfs and
//! ~7% on ext4 (whose htree folders are sorted by hash on every read).
//!
//! The same reasoning lets a remembered listing keep a **handle** on each tracked file: an
//! `O_PATH` descriptor opened by the walk that read the listing. While the folder keeps its
//! key, each name still leads to the inode its handle holds, so `fstat` of the handle is the
//! `fstatat` of the name without the name's lookup: 340 against 640 ns per file on this
//! machine's ext4 (the lookup's hash-table misses were a third of the walk), and the walk
//! stats every tracked file twice per experiment. A hard-linked or rewritten file is the
//! same inode, seen by `fstat`; a file renamed, created or removed changes the folder's key,
//! and its handles go with the listing. A folder's handle is an fd open for reading, through
//! which the walk lists it and stats its files. Handles are capped and numbered above the
//! daemon's own fds ([`handle_budget`]), and a work tree's go when it is removed or its run
//! ends ([`forget`]): a handle keeps a deleted file's space in use.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::FnvBuild;

/// How long before a read a folder must have last changed for its listing to be kept.
const SETTLED: Duration = Duration::from_millis(50);
/// The same for times in whole seconds (granularity of a second or two).
const SETTLED_COARSE: Duration = Duration::from_secs(3);

#[cfg(not(test))]
fn margin() -> Duration {
    SETTLED
}

// Tests of the walk shorten the margin on their own thread (above any clock tick still),
// so that a folder settles within the test.
#[cfg(test)]
thread_local! {
    pub(super) static TEST_MARGIN: std::cell::Cell<Option<Duration>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn margin() -> Duration {
    TEST_MARGIN.with(|m| m.get()).unwrap_or(SETTLED)
}

/// The most worktrees, and the most bytes of names, remembered (oldest dropped first).
const MAX_TREES: usize = 64;
const MAX_BYTES: usize = 64 << 20;

/// What identifies a folder's state: any change of its entries changes the ctime.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Key {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl Key {
    pub(super) fn of(st: &libc::stat64) -> Key {
        Key {
            dev: st.st_dev,
            ino: st.st_ino,
            ctime: (st.st_ctime, st.st_ctime_nsec),
            mtime: (st.st_mtime, st.st_mtime_nsec),
        }
    }

    /// Did the folder last change more than `margin` before `read_at` (wall clock)?
    fn settled(&self, read_at: (i64, i64), margin: Duration) -> bool {
        let margin = if self.ctime.1 == 0 && self.mtime.1 == 0 {
            margin.max(SETTLED_COARSE)
        } else {
            margin
        };
        let plus = |(s, ns): (i64, i64)| {
            let ns = ns + margin.subsec_nanos() as i64;
            (
                s + margin.as_secs() as i64 + ns / 1_000_000_000,
                ns % 1_000_000_000,
            )
        };
        plus(self.ctime) < read_at && plus(self.mtime) < read_at
    }
}

/// One folder's entries (without `.` and `..`): NUL-terminated names and their d_type,
/// and the handles on its tracked files and folders.
pub(super) struct Listing {
    key: Key,
    names: Vec<u8>,
    types: Vec<u8>,
    pub(super) handles: Handles,
}

/// Handles open in all listings, against [`handle_budget`].
static OPEN_HANDLES: AtomicUsize = AtomicUsize::new(0);

/// How many handles this process keeps at most, and the lowest fd number they take.
#[derive(Clone, Copy)]
struct Budget {
    max: usize,
    base: RawFd,
}

/// The handles live above the fds the daemon opens for itself (the lowest free number is
/// taken each time): up to three eighths of the open-file limit (which the daemon raises to
/// the hard limit when it starts), or 16,384, stay free for those, the rest (at most 2^18)
/// is for handles. A command's keeper then copies only the low fds (see
/// `exec::spawn::fork_keeper`).
fn handle_budget() -> Budget {
    static BUDGET: OnceLock<Budget> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
            return Budget { max: 0, base: 0 };
        }
        let soft = rl.rlim_cur.min(1 << 20) as usize;
        let base = (soft / 8 * 3).min(1 << 14);
        Budget {
            max: (soft - base).min(1 << 18),
            base: base as RawFd,
        }
    })
}

/// Handles on a listing's entries (`O_PATH` for a file, open for reading for a folder), by the
/// entry's place (-1: none), closed with the listing (see the module).
#[derive(Default)]
pub(super) struct Handles(Vec<RawFd>);

impl Handles {
    /// The handle on entry `k`, if one was opened.
    pub(super) fn get(&self, k: usize) -> Option<RawFd> {
        self.0.get(k).copied().filter(|fd| *fd >= 0)
    }

    /// Open a handle on entry `k`, `name` in the open folder `dir` (the symlink itself for a
    /// symlink; a folder is opened for reading), if the budget allows.
    pub(super) fn open(
        &mut self,
        k: usize,
        dir: RawFd,
        name: &CStr,
        folder: bool,
    ) -> Option<RawFd> {
        let budget = handle_budget();
        if OPEN_HANDLES.fetch_add(1, Ordering::Relaxed) >= budget.max {
            OPEN_HANDLES.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // O_PATH opens nothing but the inode (no device or FIFO is opened, no data read).
        let how = if folder {
            libc::O_RDONLY | libc::O_DIRECTORY
        } else {
            libc::O_PATH
        };
        // SAFETY: openat on our open folder with a NUL-terminated name, the fd moved up to
        // the handles' numbers (the low one closed).
        let fd = unsafe {
            let low = libc::openat(dir, name.as_ptr(), how | libc::O_NOFOLLOW | libc::O_CLOEXEC);
            let high = if low < 0 {
                -1
            } else {
                libc::fcntl(low, libc::F_DUPFD_CLOEXEC, budget.base)
            };
            if low >= 0 {
                libc::close(low);
            }
            high
        };
        if fd < 0 {
            OPEN_HANDLES.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        if self.0.len() <= k {
            self.0.resize(k + 1, -1);
        }
        self.0[k] = fd;
        Some(fd)
    }

    fn bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<RawFd>()
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        for &fd in self.0.iter().filter(|fd| **fd >= 0) {
            // SAFETY: our own fd, opened by `open` and closed only here.
            unsafe { libc::close(fd) };
            OPEN_HANDLES.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// lstat data through a handle.
pub(super) fn fstat(fd: RawFd) -> Option<libc::stat64> {
    // SAFETY: stat64 is plain data; fstat64 fills it for an open fd.
    unsafe {
        let mut st: libc::stat64 = std::mem::zeroed();
        (libc::fstat64(fd, &mut st) == 0).then_some(st)
    }
}

impl Listing {
    /// Read the open folder `fd` from its start, whose stat data gave `key`. None on a read
    /// error.
    pub(super) fn read(fd: RawFd, key: Key) -> Option<Listing> {
        // A remembered folder's handle was read to its end before.
        // SAFETY: lseek on an open fd.
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } != 0 {
            return None;
        }
        let mut l = Listing {
            key,
            names: Vec::new(),
            types: Vec::new(),
            handles: Handles::default(),
        };
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 16 << 10]);
        }
        BUF.with(|b| l.fill(fd, &mut b.borrow_mut()))?;
        Some(l)
    }

    fn fill(&mut self, fd: RawFd, buf: &mut [u8]) -> Option<()> {
        loop {
            // SAFETY: getdents64 fills at most buf.len() bytes of our buffer from our fd.
            let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return None;
            }
            if n == 0 {
                return Some(());
            }
            let mut at = 0usize;
            while at + 19 < n as usize {
                // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
                let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
                let d_type = buf[at + 18];
                let rec = buf.get(at + 19..at + reclen)?;
                let name = &rec[..rec.iter().position(|b| *b == 0)?];
                if name != b"." && name != b".." {
                    self.names.extend_from_slice(name);
                    self.names.push(0);
                    self.types.push(d_type);
                }
                at += reclen.max(1);
            }
        }
    }

    /// Each entry: its name with the trailing NUL, and its d_type.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&[u8], u8)> {
        self.names
            .split_inclusive(|b| *b == 0)
            .zip(self.types.iter().copied())
    }

    fn bytes(&self) -> usize {
        self.names.len() + self.types.len() + self.handles.bytes()
    }

    /// Worth keeping: read long enough after the folder's last change (see the module).
    pub(super) fn settled(&self, read_at: (i64, i64)) -> bool {
        self.key.settled(read_at, margin())
    }
}

/// The remembered listings of one work tree, by folder (relative path).
#[derive(Default)]
pub(super) struct Listings {
    by_dir: HashMap<Vec<u8>, Listing, FnvBuild>,
    bytes: usize,
}

impl Listings {
    /// The listing of `rel`, if it is still the folder's (same key).
    pub(super) fn get(&self, rel: &[u8], key: Key) -> Option<&Listing> {
        self.by_dir.get(rel).filter(|l| l.key == key)
    }

    /// Listings read by a walk replace what was remembered of their folders.
    pub(super) fn update(&mut self, read: Vec<(Vec<u8>, Listing)>) {
        for (rel, l) in read {
            let n = rel.len();
            self.bytes += n + l.bytes();
            if let Some(old) = self.by_dir.insert(rel, l) {
                self.bytes -= n + old.bytes();
            }
        }
    }
}

#[cfg(test)]
impl Listings {
    pub(super) fn remembered(&self) -> usize {
        self.by_dir.len()
    }

    /// Handles open on the files of these listings.
    pub(super) fn handles(&self) -> usize {
        self.handle_fds().len()
    }

    pub(super) fn handle_fds(&self) -> Vec<RawFd> {
        let all = self
            .by_dir
            .values()
            .flat_map(|l| l.handles.0.iter().copied());
        all.filter(|fd| *fd >= 0).collect()
    }

    /// Point the handle on `name` in `rel` at `path` instead (another file or folder).
    pub(super) fn swap_handle(&mut self, rel: &[u8], name: &[u8], path: &Path) {
        let l = self.by_dir.get_mut(rel).unwrap();
        let k = l
            .entries()
            .position(|(n, _)| &n[..n.len() - 1] == name)
            .unwrap();
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
        let file = std::ffi::CString::new(path.file_name().unwrap().as_encoded_bytes()).unwrap();
        let old = l.handles.get(k).expect("a handle on the file");
        l.handles
            .open(k, dir.as_raw_fd(), &file, path.is_dir())
            .unwrap();
        // SAFETY: the handle just replaced, ours alone.
        unsafe { libc::close(old) };
        OPEN_HANDLES.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drop `name` from the remembered listing of `rel` (its key kept).
    pub(super) fn forget_name(&mut self, rel: &[u8], name: &[u8]) {
        let l = self.by_dir.get_mut(rel).unwrap();
        let kept: Vec<(Vec<u8>, u8)> = l
            .entries()
            .filter(|(n, _)| &n[..n.len() - 1] != name)
            .map(|(n, t)| (n.to_vec(), t))
            .collect();
        assert!(kept.len() < l.types.len(), "{name:?} was not listed");
        l.names = kept.iter().flat_map(|(n, _)| n.clone()).collect();
        l.types = kept.iter().map(|(_, t)| *t).collect();
        l.handles = Handles::default(); // by place: the places moved
    }
}

static REMEMBERED: Mutex<Vec<(PathBuf, Listings)>> = Mutex::new(Vec::new());

/// The listings remembered for `workdir` (empty if none), taken out while a walk uses them.
pub(super) fn take(workdir: &Path) -> Listings {
    let mut all = REMEMBERED.lock().unwrap_or_else(|e| e.into_inner());
    match all.iter().position(|(p, _)| p == workdir) {
        Some(i) => all.remove(i).1,
        None => Listings::default(),
    }
}

/// Give `workdir`'s listings back, as the most recently used; the oldest are dropped past
/// [`MAX_TREES`] work trees or [`MAX_BYTES`] of names.
pub(super) fn put(workdir: &Path, listings: Listings) {
    let mut all = REMEMBERED.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(p, _)| p != workdir);
    all.insert(0, (workdir.to_path_buf(), listings));
    let mut bytes = 0;
    let keep = all
        .iter()
        .take_while(|(_, l)| {
            bytes += l.bytes;
            bytes <= MAX_BYTES
        })
        .count()
        .min(MAX_TREES);
    all.truncate(keep);
}

/// Forget what is remembered of `workdir`, closing its handles: its run ended, or it is
/// about to be removed.
pub(super) fn forget(workdir: &Path) {
    drop(take(workdir));
}

/// The wall clock now, as a stat time stamp.
pub(super) fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn stamp(ctime: (i64, i64), mtime: (i64, i64)) -> Key {
        Key {
            dev: 1,
            ino: 2,
            ctime,
            mtime,
        }
    }

    /// A listing of one regular file.
    fn one_file(name: &[u8]) -> Listing {
        let mut names = name.to_vec();
        names.push(0);
        Listing {
            key: stamp((0, 0), (0, 0)),
            names,
            types: vec![libc::DT_REG],
            handles: Handles::default(),
        }
    }

    #[test]
    fn a_listing_is_kept_only_once_the_folder_has_settled() {
        let m = Duration::from_millis(1500);
        let k = stamp((100, 600_000_000), (100, 0));
        assert!(!k.settled((102, 100_000_000), m), "1.5 s after: not yet");
        assert!(k.settled((102, 100_000_001), m));
        // The later of the two times counts.
        assert!(!stamp((90, 0), (101, 0)).settled((102, 0), m));
        // Whole seconds: the coarse margin.
        assert!(stamp((90, 0), (90, 0)).settled((102, 0), SETTLED));
        assert!(!stamp((100, 0), (100, 0)).settled((102, 0), SETTLED));
        assert!(stamp((100, 1), (100, 1)).settled((100, 50_000_002), SETTLED));
    }

    #[test]
    fn the_read_lists_every_entry_with_its_type() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..3000 {
            std::fs::write(
                d.path().join(format!("file-{i:04}-{}", "x".repeat(i % 40))),
                "",
            )
            .unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("file-0001", d.path().join("link")).unwrap();
        let fd: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
        let l = Listing::read(fd.as_raw_fd(), stamp((0, 0), (0, 0))).unwrap();
        let mut got: Vec<(String, u8)> = l
            .entries()
            .map(|(n, t)| {
                let n = std::str::from_utf8(n.strip_suffix(b"\0").unwrap()).unwrap();
                (n.to_string(), t)
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, u8)> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let ft = e.file_type().unwrap();
                let t = if ft.is_dir() {
                    libc::DT_DIR
                } else if ft.is_symlink() {
                    libc::DT_LNK
                } else {
                    libc::DT_REG
                };
                (e.file_name().into_string().unwrap(), t)
            })
            .collect();
        want.sort();
        assert_eq!(got.len(), 3002);
        assert_eq!(got, want);
    }

    #[test]
    fn the_oldest_work_trees_are_forgotten_first() {
        let base = PathBuf::from("/nonexistent/arctl-listing-test");
        for i in 0..MAX_TREES + 3 {
            let mut l = Listings::default();
            l.update(vec![(b"d".to_vec(), one_file(b"a"))]);
            put(&base.join(i.to_string()), l);
        }
        // Other tests' work trees share the list: the newest survive, the oldest go.
        assert_eq!(take(&base.join("0")).bytes, 0, "the oldest is gone");
        let mut newest = take(&base.join((MAX_TREES + 2).to_string()));
        assert_eq!(newest.bytes, 4);
        assert_eq!(newest.by_dir.len(), 1);
        // A folder read again replaces its listing, and its bytes.
        newest.update(vec![(b"d".to_vec(), one_file(b"ab"))]);
        assert_eq!((newest.bytes, newest.by_dir.len()), (5, 1));
    }
}
