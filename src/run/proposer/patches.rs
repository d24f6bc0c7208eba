//! The patches proposer: each `*.patch` of a folder, once, in name order (a folder of
//! hypotheses that needs no AI).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Proposal, ProposeContext, Proposed, Proposer};
use crate::run::journal::ExperimentRecord;

/// Each `*.patch` of a folder, once, in name order.
pub(super) struct Patches {
    files: Vec<PathBuf>,
    tried: HashSet<String>,
}

impl Patches {
    pub(super) fn new(dir: &Path, records: &[ExperimentRecord]) -> Result<Patches> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading patches folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().map(|x| x == "patch").unwrap_or(false))
            .collect();
        files.sort();
        Ok(Patches {
            files,
            tried: records
                .iter()
                .filter_map(|r| r.proposal_key.clone())
                .collect(),
        })
    }
}

/// A patch's description: its `Subject:` line, else a leading free-text line, else its name.
fn patch_description(name: &str, text: &str) -> String {
    for line in text.lines().take(30) {
        if let Some(s) = line.strip_prefix("Subject:") {
            let s = s.trim();
            let s = if s.starts_with('[') {
                s.split_once(']').map(|x| x.1).unwrap_or(s)
            } else {
                s
            };
            return s.trim().to_string();
        }
    }
    let first = text.lines().next().unwrap_or("").trim();
    if !first.is_empty()
        && !["diff ", "--- ", "From ", "Index:", "+++ "]
            .iter()
            .any(|p| first.starts_with(p))
    {
        return first.to_string();
    }
    name.to_string()
}

impl Proposer for Patches {
    fn propose(&mut self, ctx: &ProposeContext) -> Result<Proposed> {
        let Some(next) = self
            .files
            .iter()
            .find(|f| {
                !self.tried.contains(
                    &f.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .to_string(),
                )
            })
            .cloned()
        else {
            return Ok(Proposed::Exhausted(format!(
                "all {} patches tried",
                self.files.len()
            )));
        };
        let name = next
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        self.tried.insert(name.clone());
        let text = std::fs::read(&next).with_context(|| format!("reading {}", next.display()))?;
        let description = patch_description(&name, &String::from_utf8_lossy(&text));
        let failure = ctx
            .worktree
            .apply_patch(&next)
            .err()
            .map(|e| format!("patch {name} {e}"));
        Ok(Proposed::Change(Box::new(Proposal {
            description,
            key: Some(name),
            failure,
            ..Proposal::default()
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_descriptions() {
        assert_eq!(
            patch_description(
                "a.patch",
                "From 123\nSubject: [PATCH] use a set\n\ndiff --git"
            ),
            "use a set"
        );
        assert_eq!(
            patch_description("a.patch", "cache lookups\ndiff --git a/x b/x"),
            "cache lookups"
        );
        assert_eq!(
            patch_description("02-x.patch", "diff --git a/x b/x"),
            "02-x.patch"
        );
    }
}
