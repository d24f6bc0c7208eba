//! Trees an evaluator's side-effect walk just found clean at their HEAD, with no child able
//! to write them since (issue 20). The revert after a discarded experiment then restores
//! only the paths between the candidate's tree and the best's (a tree diff), with no stat
//! walk of its own: the walk after the last metric or guard run already looked, and only a
//! child of the daemon could have changed the tree in between (the daemon's own writes to a
//! run's tree are that run's thread's).
//!
//! Every child of the daemon, of any run, is registered while it runs with where it may
//! write: its Landlock holes (and what every command may write, `/dev/shm` among them), or
//! anywhere when nothing confines it (detect or off mode, a cluster job, a notify command).
//! Containment leaves no process behind, so a child's writes end when it does. A walk's
//! result becomes a mark only if no child that may write the tree was running when the walk
//! began or started before it ended; a child that may write a tree voids its mark; a mark
//! is used at most once.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use git2::Oid;

/// The daemon's registry: children of every run may write each other's trees when their
/// holes overlap.
pub(crate) static DAEMON: Registry = Registry::new();

/// At most this many marks are held (the oldest go first): a best tree's marks are never
/// taken, only replaced by the next walk of the same tree.
const MAX_MARKS: usize = 256;

pub(crate) struct Registry(Mutex<Inner>);

struct Inner {
    next: u64,
    /// Children running now: (token, where they may write; None: anywhere).
    running: Vec<(u64, Option<Vec<PathBuf>>)>,
    marks: Vec<Mark>,
}

struct Mark {
    token: u64,
    tree: PathBuf,
    state: State,
}

#[derive(PartialEq)]
enum State {
    Walking,
    Clean(Oid),
    Void,
}

fn covers(holes: Option<&[PathBuf]>, tree: &Path) -> bool {
    holes.is_none_or(|h| {
        h.iter()
            .any(|hole| tree.starts_with(hole) || hole.starts_with(tree))
    })
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// A child registered while it runs (dropped when it has ended).
pub(crate) struct Running {
    reg: &'static Registry,
    token: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.reg.lock().running.retain(|(t, _)| *t != self.token);
    }
}

/// A walk of one tree under way: [`Walking::clean`] when it found the tree clean.
pub(crate) struct Walking {
    reg: &'static Registry,
    token: u64,
}

impl Walking {
    /// The walk found its tree clean at `head`.
    pub(crate) fn clean(self, head: Oid) {
        let mut inner = self.reg.lock();
        if let Some(m) = inner.marks.iter_mut().find(|m| m.token == self.token) {
            if m.state == State::Walking {
                m.state = State::Clean(head);
            }
        }
    }
}

impl Drop for Walking {
    fn drop(&mut self) {
        let mut inner = self.reg.lock();
        inner
            .marks
            .retain(|m| m.token != self.token || matches!(m.state, State::Clean(_)));
    }
}

impl Registry {
    const fn new() -> Registry {
        Registry(Mutex::new(Inner {
            next: 0,
            running: Vec::new(),
            marks: Vec::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A child is starting that may write `holes` (canonical paths; None: anywhere): the
    /// marks of the trees they cover are void, and it counts as running until dropped.
    pub(crate) fn child(&'static self, holes: Option<Vec<PathBuf>>) -> Running {
        let mut inner = self.lock();
        inner.next += 1;
        let token = inner.next;
        for m in &mut inner.marks {
            if covers(holes.as_deref(), &m.tree) {
                m.state = State::Void;
            }
        }
        inner.running.push((token, holes));
        Running { reg: self, token }
    }

    /// A walk of `tree` begins; None when a running child may write it.
    pub(crate) fn walk(&'static self, tree: &Path) -> Option<Walking> {
        let tree = canonical(tree);
        let mut inner = self.lock();
        if inner
            .running
            .iter()
            .any(|(_, h)| covers(h.as_deref(), &tree))
        {
            return None;
        }
        inner.next += 1;
        let token = inner.next;
        inner.marks.retain(|m| m.tree != tree);
        if inner.marks.len() >= MAX_MARKS {
            inner.marks.remove(0);
        }
        inner.marks.push(Mark {
            token,
            tree,
            state: State::Walking,
        });
        Some(Walking { reg: self, token })
    }

    /// The commit `tree` is known clean at, if that still holds (the mark is used up).
    pub(crate) fn take(&self, tree: &Path) -> Option<Oid> {
        let tree = canonical(tree);
        let mut inner = self.lock();
        let i = inner.marks.iter().position(|m| m.tree == tree)?;
        match inner.marks.remove(i).state {
            State::Clean(head) => Some(head),
            State::Walking | State::Void => None,
        }
    }
}

/// `tree`'s mark dropped: the daemon itself is about to write it (a built-in proposer).
pub(crate) fn forget(tree: &Path) {
    DAEMON.take(tree);
}

/// A child of the daemon that nothing confines (a notify command): registered while it runs.
pub(crate) fn unconfined_child() -> Running {
    DAEMON.child(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    /// A registry of the test's own (the daemon's is shared by every test thread).
    fn registry() -> &'static Registry {
        Box::leak(Box::new(Registry::new()))
    }

    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (canonical(d.path()).join("a"), canonical(d.path()).join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        (d, a, b)
    }

    #[test]
    fn a_mark_is_used_once_and_voided_by_a_child_that_may_write_its_tree() {
        let (d, a, b) = dirs();
        let r = registry();
        r.walk(&a).unwrap().clean(oid(1));
        r.walk(&b).unwrap().clean(oid(2));
        // A child confined to b (and a temp dir) leaves a's mark.
        drop(r.child(Some(vec![b.clone(), d.path().join("tmp")])));
        assert_eq!(r.take(&b), None);
        assert_eq!(r.take(&a), Some(oid(1)));
        assert_eq!(r.take(&a), None, "used up");
        // A hole above the tree voids it too (/dev/shm holding a repo); so does a child
        // nothing confines.
        r.walk(&a).unwrap().clean(oid(3));
        drop(r.child(Some(vec![canonical(d.path())])));
        assert_eq!(r.take(&a), None);
        r.walk(&a).unwrap().clean(oid(4));
        drop(r.child(None));
        assert_eq!(r.take(&a), None);
    }

    #[test]
    fn a_child_during_the_walk_leaves_no_mark() {
        let (_d, a, b) = dirs();
        let r = registry();
        // Started before the walk ended.
        let w = r.walk(&a).unwrap();
        drop(r.child(Some(vec![a.clone()])));
        w.clean(oid(1));
        assert_eq!(r.take(&a), None);
        // Running when the walk began (another tree's child does not count).
        let running = r.child(Some(vec![a.clone()]));
        let other = r.child(Some(vec![b.clone()]));
        assert!(r.walk(&a).is_none());
        drop(running);
        r.walk(&a).unwrap().clean(oid(2));
        drop(other);
        assert_eq!(r.take(&a), Some(oid(2)));
        // A walk that found changes leaves nothing behind.
        drop(r.walk(&a).unwrap());
        assert_eq!(r.take(&a), None);
        assert!(r.lock().marks.is_empty());
    }
}
