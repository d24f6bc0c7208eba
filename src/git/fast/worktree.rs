//! A new run's worktree, checked out by arctl itself: the same admin files, work tree and
//! index as `git_worktree_add`, with each file written relative to its open folder and
//! without libgit2's per-file attribute lookups. Falls back (Ok(false)) on whatever only
//! libgit2's checkout handles.

use std::ffi::OsStr;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use git2::{ObjectType, Oid, Repository};

use super::index_file::write_index;
use super::worker_threads;

/// Below this many files a new worktree is written on the calling thread.
const PARALLEL_CHECKOUT_FROM: usize = 2000;

/// One file of the tree to check out.
pub(super) struct Item {
    pub(super) path: Vec<u8>,
    pub(super) id: Oid,
    pub(super) mode: i32,
}

/// Create the worktree `name` at `path` with HEAD on `refname` (an existing branch at
/// `base`; None: HEAD detached at `base`), as `git_worktree_add` does, but with each file
/// opened relative to its folder and without libgit2's per-file attribute lookups (its
/// checkout loads the attribute files of every file's folders, resolving each with
/// realpath: ~40% of its time). Ok(false), with nothing created: the repo or the tree uses
/// something only libgit2's checkout handles (attributes, filters, end-of-line conversion,
/// submodules, symlinks off, unusual paths), and the caller uses `git_worktree_add`. Err:
/// something failed; what was created is removed.
pub(crate) fn add_worktree(
    repo: &Repository,
    name: &str,
    path: &Path,
    refname: Option<&str>,
    base: Oid,
) -> Result<bool> {
    let Some((items, folders)) = plain_tree(repo, base)? else {
        return Ok(false);
    };
    let admin = repo.commondir().join("worktrees").join(name);
    let head = match refname {
        Some(r) => format!("ref: {r}"),
        None => base.to_string(),
    };
    let made = (|| -> Result<()> {
        write_admin(repo, &admin, path, &head)?;
        let stats = write_files(repo, path, &items)?;
        write_index(&admin, &items, &stats, Some(&folders))
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(path);
        let _ = std::fs::remove_dir_all(&admin);
        return Err(e);
    }
    Ok(true)
}

/// The files of `base`'s tree, in index (byte) order, and its folders' tree ids (for the
/// index's tree cache); None when the tree or the repo's configuration needs libgit2's
/// checkout.
fn plain_tree(repo: &Repository, base: Oid) -> Result<Option<(Vec<Item>, Folders)>> {
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
    let mut folders = Folders::default();
    folders.insert(Vec::new(), tree.id());
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
        if e.kind() == Some(ObjectType::Tree) {
            let mut path = root.as_bytes().to_vec();
            path.extend_from_slice(name);
            folders.insert(path, e.id());
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
    Ok(Some((items, folders)))
}

/// A tree's folders (paths relative to its root, the root itself empty) → their tree ids.
pub(super) type Folders = std::collections::HashMap<Vec<u8>, Oid>;

/// The admin folder and the worktree's `.git` file, with the contents `git_worktree_add`
/// writes; `head` is what HEAD holds.
fn write_admin(repo: &Repository, admin: &Path, path: &Path, head: &str) -> Result<()> {
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
    mark_top_dir(path);
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
    new_file(&admin.join("HEAD"), format!("{head}\n"))?;
    Ok(())
}

/// Mark a new worktree's root as the top of a directory hierarchy (`chattr +T`): ext4's
/// Orlov allocator then places its folders, and so its files' inodes, in a group of their
/// own instead of next to the repo. Why: on an ext4 without a journal (this machine's),
/// creating an inode skips, one by one, every free inode of its group deleted in the last
/// 60 s to 6 min (`recently_deleted`), and next to the repo sit the index, lock and ref
/// files every git command and every run replaces. Right after a shell loop of 20
/// experiments a 10,000-file checkout took 512-857 ms there, 87-108 ms with the mark (six
/// trials each). A hint only: a file system without the flag refuses it, which is ignored.
fn mark_top_dir(path: &Path) {
    const FS_TOPDIR_FL: libc::c_long = 0x0002_0000;
    let Ok(f) = std::fs::File::open(path) else {
        return;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS and FS_IOC_SETFLAGS read and write one long through a valid
    // pointer on an open file.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) == 0 {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fast::test_util::*;
    use crate::git::fast::walk::candidates;
    use crate::git::WorkTree;

    /// A repo with one commit of more files than the parallel checkout starts from, an
    /// executable, a symlink and names sorting around a folder's; its dir, path and HEAD.
    fn checkout_fixture() -> (tempfile::TempDir, std::path::PathBuf, Oid) {
        let (d, repo) = empty_repo("repo");
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
        (d, repo, head)
    }

    /// Asserts the admin files of the worktrees `fast` (branch f) and `slow` (branch s) of
    /// `repo`, and their `.git` files, are the same but for their names and paths.
    fn assert_same_admin_files(repo: &Path, fast: &Path, slow: &Path) {
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
    }

    #[test]
    fn new_worktree_matches_libgit2s_checkout() {
        let (d, repo, head) = checkout_fixture();
        let r = Repository::open(&repo).unwrap();
        let (fast, slow) = (d.path().join("fast"), d.path().join("slow"));
        // The fast path through create_worktree; libgit2's own checkout for the other.
        r.branch("f", &r.find_commit(head).unwrap(), false).unwrap();
        assert!(
            add_worktree(
                &r,
                &crate::git::worktree_name("f"),
                &fast,
                Some("refs/heads/f"),
                head
            )
            .unwrap(),
            "fast path not taken"
        );
        r.branch("s", &r.find_commit(head).unwrap(), false).unwrap();
        let reference = r.find_reference("refs/heads/s").unwrap();
        let mut opts = git2::WorktreeAddOptions::new();
        opts.reference(Some(&reference));
        r.worktree(&crate::git::worktree_name("s"), &slow, Some(&opts))
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
        assert_same_admin_files(&repo, &fast, &slow);
        let wt = WorkTree::open(&fast).unwrap();
        assert!(wt.changes_since(head).unwrap().is_empty());
        // The stat data survived: the walk trusts (nearly) every entry.
        let c = candidates(&wt.repo, &wt.index().unwrap()).unwrap();
        assert!(
            c.len() < 500,
            "{} of 2100 entries without trusted stat data",
            c.len()
        );
        assert!(wt.is_clean().unwrap());
        assert!(r
            .find_worktree(&crate::git::worktree_name("f"))
            .unwrap()
            .validate()
            .is_ok());

        // Detached (the run's second tree): HEAD holds the commit; git sees it clean.
        let det = d.path().join("detached");
        crate::git::create_detached_worktree(&r, "arctl-best-x", &det, head).unwrap();
        assert_eq!(snapshot(&det), snapshot(&slow));
        assert_eq!(git(&det, &["status", "--porcelain"]), "");
        assert_eq!(git(&det, &["rev-parse", "HEAD"]).trim(), head.to_string());
        let symbolic = std::process::Command::new("git")
            .current_dir(&det)
            .args(["symbolic-ref", "-q", "HEAD"])
            .status()
            .unwrap();
        assert_eq!(symbolic.code(), Some(1), "HEAD is detached");
        let wt = WorkTree::open(&det).unwrap();
        assert!(matches!(wt.head_state(), crate::git::HeadState::Detached(o) if o == head));
        assert!(wt.is_clean().unwrap());
        assert!(r.find_worktree("arctl-best-x").unwrap().validate().is_ok());
    }

    #[test]
    fn the_tree_cache_is_the_commits_and_git_keeps_it_right() {
        let (d, repo) = empty_repo("repo");
        for p in [
            "top.txt",
            "a/y.txt",
            "a-b/x.txt",
            "b/c/d/e.txt",
            "b/c/f.txt",
            "b/g.txt",
        ] {
            write(&repo.join(p), p);
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);
        let head = Oid::from_str(git(&repo, &["rev-parse", "HEAD"]).trim()).unwrap();
        let r = Repository::open(&repo).unwrap();
        let (fast, slow) = (d.path().join("fast"), d.path().join("slow"));
        let name = crate::git::worktree_name("f");
        assert!(add_worktree(&r, &name, &fast, None, head).unwrap());
        git(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                slow.to_str().unwrap(),
                "main",
            ],
        );
        let index = repo.join(".git/worktrees").join(&name).join("index");
        let tree = r.find_commit(head).unwrap().tree_id();
        assert_eq!(
            super::super::index_file::read_index(&index).unwrap().root,
            Some(tree)
        );
        assert_eq!(git(&fast, &["write-tree"]).trim(), tree.to_string());
        // git invalidates along the folders we recorded: the same trees as its own index.
        for w in [&fast, &slow] {
            write(&w.join("b/c/d/e.txt"), "changed\n");
            write(&w.join("a/new/z.txt"), "new\n");
            std::fs::remove_file(w.join("a-b/x.txt")).unwrap();
            git(w, &["add", "-A"]);
        }
        let changed = git(&slow, &["write-tree"]);
        assert_eq!(git(&fast, &["write-tree"]), changed);
        let fast_repo = Repository::open(&fast).unwrap();
        let mut idx = fast_repo.index().unwrap();
        assert_eq!(idx.write_tree().unwrap().to_string(), changed.trim());
    }
}
