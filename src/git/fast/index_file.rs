//! git's index format, by hand where libgit2 costs more than the job needs: the writer of a
//! new worktree's index (version 2 with its tree cache, in one pass from the checked-out
//! files' stat data: through libgit2 it cost a fifth of the whole checkout), the writer of
//! libgit2's in-memory index (its own write spent half its time in a slower SHA-1), and a
//! reader for the stat walk of a repository libgit2 has not loaded yet.

use std::path::Path;

use anyhow::{Context, Result};

use super::walk::{racy, GITLINK};
use super::worktree::{Folders, Item};

/// The worktree's index (`index` in its admin folder): every item with the stat data of
/// its file, as git's checkout records it. Written directly in git's index format version
/// 2: adding 100,000 entries through libgit2 (path checks and a sorted insert per entry)
/// and reading the tree back for its cache took ~0.4 s here, a fifth of the whole checkout;
/// this takes ~20 ms. `items` are in index order (plain byte order of the paths). With
/// `folders` (the checked-out tree's folder ids) the tree cache extension is written too:
/// without it every fresh reader (the side-effect check after each baseline run) rebuilt
/// all the trees to learn the index's root.
pub(super) fn write_index(
    admin: &Path,
    items: &[Item],
    stats: &[libc::stat64],
    folders: Option<&Folders>,
) -> Result<()> {
    let mut lock = Lock::create(admin)?;
    let mut out = header(items.len())?;
    for (it, st) in items.iter().zip(stats) {
        // The index keeps the low 32 bits of each number.
        let stat = [
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
        ];
        push_entry(
            &mut out,
            stat,
            it.id,
            it.path.len().min(0xfff) as u16,
            &it.path,
        );
        lock.drain(&mut out, false)?;
    }
    if let Some(tree) = folders.and_then(|f| tree_extension(items, f)) {
        push_tree_extension(&mut out, &tree)?;
    }
    lock.drain(&mut out, true)?;
    lock.commit().map(|_| ())
}

/// libgit2's in-memory `index` in git's index format version 2, with `tree` (the tree
/// cache extension's data): what libgit2's own write produces, byte for byte. libgit2
/// hashes the file through its collision-detecting SHA-1, ~55% of its write on a
/// 10,000-file tree; the `sha1` crate uses the CPU's SHA instructions. Entries not older
/// than `stamp` (the mtime of the index file being replaced) are written smudged (size 0)
/// when `differs` says their file no longer matches them, as libgit2 and git do: once the
/// new file is newer than them their stat data would look clean. Returns the checksum and,
/// with `keep`, the entries as written (the walks of the file use them). None, having written
/// nothing, for what this leaves out: conflicts (their name and resolve-undo extensions),
/// extended flags (intent-to-add, skip-worktree: version 3), version 4's compressed paths,
/// entries not in byte order (a case-insensitive index).
pub(super) fn write_libgit2_index(
    admin: &Path,
    index: &git2::Index,
    tree: &[u8],
    stamp: Option<(i64, i64)>,
    keep: bool,
    mut differs: impl FnMut(&git2::IndexEntry) -> bool,
) -> Result<Option<([u8; 20], Vec<git2::IndexEntry>)>> {
    const EXTENDED: u16 = 0x4000;
    if index.version() > 3 || index.has_conflicts() {
        return Ok(None);
    }
    let mut lock = Lock::create(admin)?;
    let mut out = header(index.len())?;
    let mut entries: Vec<git2::IndexEntry> = Vec::with_capacity(if keep { index.len() } else { 0 });
    let mut last: Option<Vec<u8>> = None;
    for mut e in index.iter() {
        if e.flags & EXTENDED != 0 || last.as_ref().is_some_and(|l| *l >= e.path) {
            return Ok(None);
        }
        if e.mode != GITLINK && stamp.is_some_and(|s| racy(&e, s)) && differs(&e) {
            e.file_size = 0;
        }
        let stat = [
            e.ctime.seconds() as u32,
            e.ctime.nanoseconds(),
            e.mtime.seconds() as u32,
            e.mtime.nanoseconds(),
            e.dev,
            e.ino,
            e.mode,
            e.uid,
            e.gid,
            e.file_size,
        ];
        push_entry(&mut out, stat, e.id, e.flags, &e.path);
        if keep {
            last = Some(e.path.clone());
            entries.push(e);
        } else {
            last = Some(e.path);
        }
        lock.drain(&mut out, false)?;
    }
    push_tree_extension(&mut out, tree)?;
    lock.drain(&mut out, true)?;
    Ok(Some((lock.commit()?, entries)))
}

/// An index file's header (signature, version 2, entry count), in a buffer for the entries
/// that follow (written out by [`Lock::drain`] every [`CHUNK`] bytes).
fn header(count: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(CHUNK + 4096);
    out.extend_from_slice(b"DIRC");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&u32::try_from(count)?.to_be_bytes());
    Ok(out)
}

/// One entry in version 2's layout: the stat data, the id, the flags (stage and path
/// length), the path, and 1 to 8 NULs, so that each entry's length is a multiple of 8.
fn push_entry(out: &mut Vec<u8>, stat: [u32; 10], id: git2::Oid, flags: u16, path: &[u8]) {
    for v in stat {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(path);
    let pad = 8 - (62 + path.len()) % 8;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn push_tree_extension(out: &mut Vec<u8>, tree: &[u8]) -> Result<()> {
    out.extend_from_slice(b"TREE");
    out.extend_from_slice(&u32::try_from(tree.len())?.to_be_bytes());
    out.extend_from_slice(tree);
    Ok(())
}

/// How much of an index file is built in memory before it is written out: a whole
/// 100,000-entry index would be ~10 MB per run's thread.
const CHUNK: usize = 1 << 16;

/// An index file being written as git does: `index.lock` in the admin folder (created only
/// if absent), its bytes hashed as they go, renamed over `index` by [`Lock::commit`] and
/// removed if dropped before.
struct Lock {
    admin: std::path::PathBuf,
    file: Option<std::fs::File>,
    sum: sha1::Sha1,
}

impl Lock {
    fn create(admin: &Path) -> Result<Lock> {
        let lock = admin.join("index.lock");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .with_context(|| format!("creating {}", lock.display()))?;
        Ok(Lock {
            admin: admin.to_path_buf(),
            file: Some(file),
            sum: sha1::Digest::new(),
        })
    }

    /// Write out (and empty) `buf` once it holds [`CHUNK`] bytes, or with `all` at once.
    fn drain(&mut self, buf: &mut Vec<u8>, all: bool) -> Result<()> {
        use std::io::Write;
        if buf.len() < CHUNK && !all {
            return Ok(());
        }
        sha1::Digest::update(&mut self.sum, &buf[..]);
        let file = self.file.as_mut().context("index.lock already closed")?;
        file.write_all(buf)
            .with_context(|| format!("writing {}", self.admin.join("index.lock").display()))?;
        buf.clear();
        Ok(())
    }

    /// The checksum appended, and the file renamed over `index`. Returns the checksum.
    fn commit(mut self) -> Result<[u8; 20]> {
        use std::io::Write;
        let sum: [u8; 20] = sha1::Digest::finalize(std::mem::take(&mut self.sum)).into();
        let lock = self.admin.join("index.lock");
        let mut file = self.file.take().context("index.lock already closed")?;
        let written = file
            .write_all(&sum)
            .and_then(|_| std::fs::rename(&lock, self.admin.join("index")));
        if written.is_err() {
            let _ = std::fs::remove_file(&lock);
        }
        written.with_context(|| format!("writing {}", lock.display()))?;
        Ok(sum)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(self.admin.join("index.lock"));
        }
    }
}

/// The tree cache extension's data for `items` (git's `cache-tree` format: per folder, in
/// pre-order, its name, the number of index entries below it, the number of its
/// subfolders and its tree id). None when a folder of the tree holds no file (an empty
/// tree: the index cannot hold it, so its tree would not be the commit's).
fn tree_extension(items: &[Item], folders: &Folders) -> Option<Vec<u8>> {
    fn node(
        out: &mut Vec<u8>,
        name: &[u8],
        prefix: &[u8],
        items: &[Item],
        folders: &Folders,
        used: &mut usize,
    ) -> Option<()> {
        let folder = prefix.strip_suffix(b"/").unwrap_or(prefix);
        let id = folders.get(folder)?;
        *used += 1;
        let mut below = Vec::new();
        let mut subtrees = 0;
        let mut i = 0;
        while i < items.len() {
            let rest = &items[i].path[prefix.len()..];
            let Some(slash) = rest.iter().position(|b| *b == b'/') else {
                i += 1;
                continue;
            };
            // A folder's entries are contiguous in byte order.
            let mut sub = prefix.to_vec();
            sub.extend_from_slice(&rest[..=slash]);
            let n = items[i..]
                .iter()
                .take_while(|it| it.path.starts_with(&sub))
                .count();
            node(
                &mut below,
                &rest[..slash],
                &sub,
                &items[i..i + n],
                folders,
                used,
            )?;
            subtrees += 1;
            i += n;
        }
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(format!("{} {subtrees}\n", items.len()).as_bytes());
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&below);
        Some(())
    }
    let mut out = Vec::new();
    let mut used = 0;
    node(&mut out, b"", b"", items, folders, &mut used)?;
    (used == folders.len()).then_some(out)
}

/// An index file as the stat walk needs it: its entries and the root tree its tree cache
/// records (None: no valid cache).
pub(super) struct IndexRead {
    pub(super) entries: Vec<git2::IndexEntry>,
    pub(super) root: Option<git2::Oid>,
    /// The file's modification time (racy entries are judged against it).
    pub(super) mtime: (i64, i64),
}

/// The index at `path` read directly: versions 2 and 3, checksum verified (with the `sha1`
/// crate: libgit2 reads through its collision-detecting SHA-1, a third of an experiment's
/// index cost on a 10,000-file tree, for a file the walk only compares stat data with).
/// None for anything else (version 4, a split index, a bad checksum, a short file): the
/// caller reads it through libgit2.
pub(super) fn read_index(path: &Path) -> Option<IndexRead> {
    use sha1::Digest;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut f = std::fs::File::open(path).ok()?;
    let md = f.metadata().ok()?;
    let mut bytes = Vec::with_capacity(md.len() as usize);
    f.read_to_end(&mut bytes).ok()?;
    let body_len = bytes.len().checked_sub(20)?;
    let (body, sum) = bytes.split_at(body_len);
    if body.len() < 12 || sha1::Sha1::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader { b: body, at: 0 };
    if r.take(4)? != b"DIRC" {
        return None;
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return None;
    }
    let count = r.u32()? as usize;
    let mut entries = Vec::with_capacity(count.min(body.len() / 62));
    for _ in 0..count {
        entries.push(r.entry(version)?);
    }
    let mut root = None;
    while r.at < body.len() {
        let sig = r.take(4)?;
        let size = r.u32()? as usize;
        let data = r.take(size)?;
        match sig {
            b"TREE" => root = root_tree(data),
            b"link" => return None, // a split index: the entries are elsewhere
            // Other extensions are optional (an upper-case first letter) or unknown.
            s if !s[0].is_ascii_uppercase() => return None,
            _ => {}
        }
    }
    Some(IndexRead {
        entries,
        root,
        mtime: (md.mtime(), md.mtime_nsec()),
    })
}

/// The root's id in a tree cache extension (its first entry: an empty path), when valid.
fn root_tree(data: &[u8]) -> Option<git2::Oid> {
    let nul = data.iter().position(|b| *b == 0)?;
    if nul != 0 {
        return None;
    }
    let rest = &data[1..];
    let nl = rest.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&rest[..nl]).ok()?;
    let count: i64 = head.split(' ').next()?.parse().ok()?;
    if count < 0 {
        return None; // invalidated
    }
    git2::Oid::from_bytes(rest.get(nl + 1..nl + 21)?).ok()
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn entry(&mut self, version: u32) -> Option<git2::IndexEntry> {
        let start = self.at;
        let mut v = [0u32; 10];
        for x in &mut v {
            *x = self.u32()?;
        }
        let id = git2::Oid::from_bytes(self.take(20)?).ok()?;
        let flags = self.u16()?;
        let flags_extended = if version >= 3 && flags & 0x4000 != 0 {
            self.u16()?
        } else {
            0
        };
        let len = (flags & 0xfff) as usize;
        let path = if len < 0xfff {
            self.take(len)?.to_vec()
        } else {
            let rest = self.b.get(self.at..)?;
            let n = rest.iter().position(|b| *b == 0)?;
            self.take(n)?.to_vec()
        };
        // NUL padding to a multiple of 8 bytes (at least one NUL).
        let used = self.at - start;
        let padded = (used + 8) & !7;
        if self.take(padded - used)?.iter().any(|b| *b != 0) {
            return None;
        }
        Some(git2::IndexEntry {
            ctime: git2::IndexTime::new(v[0] as i32, v[1]),
            mtime: git2::IndexTime::new(v[2] as i32, v[3]),
            dev: v[4],
            ino: v[5],
            mode: v[6],
            uid: v[7],
            gid: v[8],
            file_size: v[9],
            id,
            flags,
            flags_extended,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fast::test_util::{empty_repo, git, write};

    fn same(a: &git2::IndexEntry, b: &git2::IndexEntry) -> bool {
        (
            a.ctime,
            a.mtime,
            a.dev,
            a.ino,
            a.mode,
            a.uid,
            a.gid,
            a.file_size,
        ) == (
            b.ctime,
            b.mtime,
            b.dev,
            b.ino,
            b.mode,
            b.uid,
            b.gid,
            b.file_size,
        ) && (a.id, a.flags, a.flags_extended, &a.path)
            == (b.id, b.flags, b.flags_extended, &b.path)
    }

    #[test]
    fn the_direct_read_matches_libgit2_or_declines() {
        let (_d, repo) = empty_repo("r");
        let long = format!("deep/{}x.txt", format!("{}/", "n".repeat(200)).repeat(3));
        for p in ["a.txt", "b/c.txt", "b/d/e.txt", long.as_str()] {
            write(&repo.join(p), p);
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);
        let path = repo.join(".git/index");
        let check = |what: &str| {
            let r = git2::Repository::open(&repo).unwrap();
            let mut index = r.index().unwrap();
            let read = read_index(&path).unwrap_or_else(|| panic!("{what}: declined"));
            let theirs: Vec<_> = index.iter().collect();
            assert_eq!(read.entries.len(), theirs.len(), "{what}");
            for (a, b) in read.entries.iter().zip(&theirs) {
                assert!(same(a, b), "{what}: {a:?} vs {b:?}");
            }
            read.root
                .map(|root| assert_eq!(root, index.write_tree().unwrap(), "{what}"))
        };
        // git's own index after a commit has a valid tree cache.
        assert!(check("git commit").is_some());
        // An intent-to-add entry: version 3, extended flags; the tree cache is invalid.
        write(&repo.join("b/new.txt"), "new");
        git(&repo, &["add", "-N", "b/new.txt"]);
        assert_eq!(check("intent to add"), None);
        git(&repo, &["reset", "-q"]);
        // libgit2's own write.
        let r = git2::Repository::open(&repo).unwrap();
        let mut index = r.index().unwrap();
        index.write_tree().unwrap();
        index.write().unwrap();
        check("libgit2 write");
        // Version 4, a bad checksum and a short file are declined.
        git(&repo, &["update-index", "--index-version", "4"]);
        assert!(read_index(&path).is_none(), "version 4");
        git(&repo, &["update-index", "--index-version", "2"]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_index(&path).is_none(), "bad checksum");
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(read_index(&path).is_none(), "short");
    }
}
