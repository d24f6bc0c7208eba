//! The commit and revert fast paths: stage only the paths the scope check listed, and
//! restore only the paths that differ from the target, each checked against (or falling
//! back to) the full libgit2 operation.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use git2::{Index, ObjectType, Oid, Tree};

use super::super::{Change, ChangeKind, WorkTree};
use super::tree_diff::tree_changes;
use super::walk::candidates_of;

/// The tree the index holds (None with conflicts). Free when the index's tree cache is
/// valid, which it is after every write this module makes.
pub(super) fn index_tree(index: &mut Index) -> Option<Oid> {
    index.write_tree().ok()
}

impl WorkTree {
    /// The paths [`WorkTree::changes_since`] needs to diff against `tree`: Some(candidates)
    /// when the index holds `tree` and the stat walk applies, None for a full diff.
    pub(crate) fn paths_to_diff(&self, tree: &Tree) -> Result<Option<Vec<Vec<u8>>>> {
        // A repository whose index libgit2 has not loaded yet (the guard rails open one per
        // check) reads the file directly when its tree cache says it holds `tree`: libgit2
        // would read it through its slower checksum and entry map, which pays only when the
        // index is used again.
        let fresh = !self.index_state.loaded.get();
        if let Some(read) = fresh.then(|| self.index_read()).flatten() {
            if read.root == Some(tree.id()) {
                return Ok(candidates_of(&self.repo, &read.entries, read.mtime));
            }
        }
        let mut index = self.index()?;
        if index_tree(&mut index) != Some(tree.id()) {
            return Ok(None);
        }
        Ok(self.candidates_in(&index))
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
                self.index()?.read(true)?;
                self.commit_all(message, parent)
            }
        }
    }

    fn stage_changes(&self, changes: &[Change], parent: Oid) -> Result<Option<Oid>> {
        let mut index = self.index()?;
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
        Ok(Some(self.write_index(&mut index)?))
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
    /// that differ only: those the stat walk lists, or none when the tree is known clean
    /// at `clean_at` and the index holds that commit's tree. Ok(false): not applicable, or
    /// the result did not check out; the caller does the full reset.
    pub(crate) fn fast_revert(&self, oid: Oid, clean_at: Option<Oid>) -> Result<bool> {
        let target = self.repo.find_commit(oid)?.tree()?;
        let mut index = self.index()?;
        let Some(current) = index_tree(&mut index) else {
            return Ok(false);
        };
        let known = match clean_at {
            Some(c) => self.repo.find_commit(c)?.tree_id() == current,
            None => false,
        };
        let mut paths = if known {
            Vec::new()
        } else {
            match self.candidates_in(&index) {
                Some(p) => p,
                None => return Ok(false),
            }
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
        // The files only: the index is set below, and written once. Without a refresh:
        // the index in memory is current (`index_sync`).
        let mut co = git2::build::CheckoutBuilder::new();
        co.force()
            .remove_untracked(true)
            .disable_pathspec_match(true)
            .update_index(false)
            .refresh(false);
        for p in &paths {
            co.path(&p[..]);
        }
        self.repo.checkout_tree(target.as_object(), Some(&mut co))?;
        let mut index = self.index()?;
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
        self.write_index(&mut index)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::fast::test_util::*;

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
            let fast = wa.fast_revert(head, None).unwrap();
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
            let idx = wa.index().unwrap();
            let c = crate::git::fast::walk::candidates(&wa.repo, &idx).unwrap();
            assert!(c.len() <= 1, "{c:?}");
        }
    }
}
