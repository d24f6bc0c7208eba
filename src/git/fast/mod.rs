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
//! * **scope check**: one stat-only walk ([`candidates`](walk::candidates): `read_dir` +
//!   `fstatat` relative to each folder, compared with the index's stat data) finds the
//!   paths that *may* differ from the index — a superset; libgit2 then diffs exactly
//!   those paths (`pathspec` + `disable_pathspec_match`, which libgit2 turns into an
//!   iterator path list), so the result is libgit2's own, entry for entry.
//! * **commit**: the scope check already listed the changed paths; only those are staged
//!   ([`WorkTree::commit_changes`](super::WorkTree::commit_changes)), and the index's
//!   tree cache makes `write_tree` touch only the changed folders.
//! * **revert**: one stat walk plus the tree diff between the index and the target gives
//!   the paths to restore (the tree diff alone when the caller knows the tree clean at the
//!   index's commit: the walk after the last metric run found it so, see
//!   `run::clean_marks`); libgit2's checkout (force, remove untracked) runs on those paths
//!   only, the index is brought to the target at those paths, and the result is checked
//!   (`write_tree` of the index must be the target's tree) before it is trusted.
//! * **the index**: a new worktree's is written directly, with its tree cache; a check on a
//!   freshly opened repository (the guard rails' after each metric run) reads it directly
//!   too, and untracked files the ignore rules hide (the run's TSV and log) are dropped
//!   before libgit2's diff, which would load the index and the attributes only to drop
//!   them: at 10,000 files that check went from ~7.5 to ~5 ms.
//! * **the index writes** of the commit and the revert are ours too (`index_sync`): libgit2
//!   hashes the whole file through its collision-detecting SHA-1 on every write, and re-reads
//!   any file it did not write itself; the run checks the file's checksum against its own
//!   last write instead, and hands libgit2 the index it holds in memory.
//!
//! Every fast path checks its preconditions (the index holds the tree it is compared
//! against; no conflicts, intent-to-add, skip-worktree or submodule entries; no nested
//! repository; a case-sensitive repo) and otherwise falls back to the full libgit2
//! operation, which stays the reference: the tests of each file compare both on every kind
//! of change a proposer can make.
//!
//! The files: `walk` (the stat walk), `listing` (the folder listings it remembers between
//! walks, and handles on their files), `tree_diff` (tree-to-tree on the differing paths),
//! `commit` (the commit and revert fast paths), `worktree` (a new run's checkout),
//! `index_file` (git's index format: a new worktree's index and libgit2's in-memory one
//! written directly, any index read directly for a walk) and `index_sync` (when the index
//! in memory is the file).

mod commit;
mod index_file;
mod index_sync;
mod listing;
#[cfg(test)]
mod test_util;
mod tree_diff;
mod walk;
mod worktree;

pub(crate) use index_sync::IndexState;
/// Forget what the walks and the index writes remembered of the work tree at `workdir`
/// (its run has ended, or it is being removed: a handle keeps a deleted file's space).
pub(crate) fn forget_walk_state(workdir: &std::path::Path) {
    listing::forget(workdir);
    index_sync::forget(workdir);
}
pub(crate) use worktree::add_worktree;

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

/// Threads for `items` items of work: one below `from`, else one per core that is idle now
/// (at most 4). A helper on a busy core waits for its turn and then holds up the others at
/// the end: with one of two cores kept busy, the 10,000-file loop ran ~4% faster on one
/// thread, while on an idle machine two threads are ~20% faster.
fn worker_threads(items: usize, from: usize) -> usize {
    if items < from {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runnable = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| runnable_now(&l))
        .unwrap_or(1);
    idle_threads(cores, runnable)
}

/// The tasks runnable right now (the caller included): the fourth field of /proc/loadavg,
/// `running/total`.
fn runnable_now(loadavg: &str) -> Option<usize> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The calling thread plus one per core nobody else is running on, at most 4.
fn idle_threads(cores: usize, runnable: usize) -> usize {
    (cores + 1).saturating_sub(runnable.max(1)).clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_threads_only_for_idle_cores() {
        assert_eq!(runnable_now("0.52 0.58 0.59 3/1166 12345\n"), Some(3));
        assert_eq!(runnable_now("garbage"), None);
        assert_eq!(idle_threads(2, 1), 2, "idle machine: both cores");
        assert_eq!(idle_threads(2, 2), 1, "one core busy elsewhere");
        assert_eq!(idle_threads(2, 9), 1);
        assert_eq!(idle_threads(8, 1), 4, "at most 4");
        assert_eq!(idle_threads(8, 6), 3);
        assert_eq!(idle_threads(1, 0), 1);
    }
}
