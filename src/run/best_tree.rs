//! The run's second worktree, detached at the best commit: in noisy mode the current best is
//! measured there, beside the candidate in the run's own worktree, in the same rounds.

use anyhow::Result;

use crate::exec::Cancel;
use crate::git::{self, HeadState, WorkTree};
use crate::run::runner::Runner;

impl Runner {
    /// Create the best tree (or move it to the best commit); says how it was set up.
    /// Interrupted while `[setup]` prepares it, the half-made tree is removed again (the
    /// measurement that follows sees `cancel` and stops too).
    pub(super) fn ensure_best_tree(&self, cancel: &Cancel) -> Result<String> {
        let best = git::parse_oid(&self.rec.best_commit)?;
        let path = self.h.paths.best_tree();
        let mut cell = self.best_tree.borrow_mut();
        if cell.is_none() {
            let (repo, _) = git::open_repo(&self.rec.repo)?;
            let name = git::names::best_tree_name(&self.rec.id);
            git::create_detached_worktree(&repo, &name, &path, best)?;
            if !self.prepare_tree(&path, "best-tree", cancel)? {
                let _ = git::remove_worktree(&repo, &name, &path);
                return Ok("interrupted while its setup ran".into());
            }
            *cell = Some(WorkTree::open(&path)?);
        }
        let bt = cell.as_ref().expect("just created");
        if !matches!(bt.head_state(), HeadState::Detached(o) if o == best) || !bt.is_clean()? {
            bt.checkout_detached(best)?;
        }
        Ok(format!(
            "second worktree {} detached at {}",
            path.display(),
            git::short(best)
        ))
    }

    /// How the best was measured beside the candidate (the journal's `best_tree`).
    pub(super) fn best_tree_description(&self) -> String {
        format!(
            "second worktree {} detached at {}",
            self.h.paths.best_tree().display(),
            &self.rec.best_commit[..7.min(self.rec.best_commit.len())]
        )
    }

    pub(super) fn drop_best_tree(&mut self) {
        *self.best_tree.get_mut() = None;
        let path = self.h.paths.best_tree();
        if let Ok((repo, _)) = git::open_repo(&self.rec.repo) {
            let _ = git::remove_worktree(&repo, &git::names::best_tree_name(&self.rec.id), &path);
        }
    }
}
