//! The run's second worktree, detached at the best commit: in noisy mode the current best is
//! measured there, beside the candidate in the run's own worktree, in the same rounds.

use anyhow::Result;

use crate::git::{self, HeadState, WorkTree};
use crate::run::runner::Runner;

impl Runner {
    /// Create the best tree (or move it to the best commit); says how it was set up.
    pub(super) fn ensure_best_tree(&mut self) -> Result<String> {
        let best = git::parse_oid(&self.rec.best_commit)?;
        let path = self.h.paths.best_tree();
        if self.best_tree.is_none() {
            let (repo, _) = git::open_repo(&self.rec.repo)?;
            let name = git::names::best_tree_name(&self.rec.id);
            git::create_detached_worktree(&repo, &name, &path, best)?;
            self.best_tree = Some(WorkTree::open(&path)?);
        }
        let bt = self.best_tree.as_ref().expect("just created");
        if !matches!(bt.head_state(), HeadState::Detached(o) if o == best) || !bt.is_clean()? {
            bt.checkout_detached(best)?;
        }
        Ok(format!(
            "second worktree {} detached at {}",
            path.display(),
            git::short(best)
        ))
    }

    pub(super) fn drop_best_tree(&mut self) {
        self.best_tree = None;
        let path = self.h.paths.best_tree();
        if let Ok((repo, _)) = git::open_repo(&self.rec.repo) {
            let _ = git::remove_worktree(&repo, &git::names::best_tree_name(&self.rec.id), &path);
        }
    }
}
