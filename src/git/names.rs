//! How arctl names what it puts into a repository for a run: its branch, worktrees, and the
//! refs that keep discarded experiments addressable. One spelling each, used by the loop,
//! recovery, merge and cleanup.

use std::path::{Path, PathBuf};

/// The run's branch: `autoresearch/<id>`.
pub fn branch(id: &str) -> String {
    format!("autoresearch/{id}")
}

/// Where a run's worktree goes: `<repo>/../<repo-name>-<id>`.
pub fn worktree_path(root: &Path, id: &str) -> PathBuf {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "repo".into());
    root.parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{name}-{id}"))
}

/// Git's internal name of a run's worktree (the folder under .git/worktrees).
pub fn worktree_name(id: &str) -> String {
    format!("autoresearch-{id}")
}

/// Git's name of the run's second worktree, detached at the best commit (noisy mode).
pub fn best_tree_name(id: &str) -> String {
    format!("arctl-best-{id}")
}

/// Git's names of the two worktrees `arctl merge` re-measures in: the updated base and the
/// merged candidate.
pub fn merge_tree_names(id: &str) -> (String, String) {
    (
        format!("arctl-merge-base-{id}"),
        format!("arctl-merge-candidate-{id}"),
    )
}

/// Every ref of a run outside its branch lives under this prefix.
pub fn run_refs(id: &str) -> String {
    format!("refs/autoresearch/{id}/")
}

/// The ref that keeps experiment `n`'s discarded commit addressable until cleanup.
pub fn discarded_ref(id: &str, n: u32) -> String {
    format!("{}discarded/{n}", run_refs(id))
}
