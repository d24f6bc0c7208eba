//! The agent proposer: any command (`claude -p`, `codex exec`, `aider ...`), a fresh
//! process per experiment in the worktree, the rendered prompt on stdin.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Proposal, ProposeContext, Proposed, Proposer};
use crate::exec::{CommandSpec, Limits};
use crate::run::journal::CommandRecord;

/// Any command (`claude -p`, `codex exec`, `aider ...`): prompt on stdin, a fresh process
/// per experiment, in the worktree.
pub(super) struct Agent {
    pub(super) command: String,
    pub(super) timeout: std::time::Duration,
}

impl Proposer for Agent {
    fn can_fix(&self) -> bool {
        true
    }

    fn propose(&mut self, ctx: &ProposeContext) -> Result<Proposed> {
        let desc_file = ctx.output_dir.join("description.txt");
        let proposal_file = ctx.output_dir.join("proposal.json");
        let _ = std::fs::remove_file(&desc_file);
        let _ = std::fs::remove_file(&proposal_file);
        let mut env = ctx.env.clone();
        env.push((
            "ARCTL_DESCRIPTION_FILE".into(),
            desc_file.display().to_string(),
        ));
        env.push((
            "ARCTL_PROPOSAL_FILE".into(),
            proposal_file.display().to_string(),
        ));
        env.push(("ARCTL_FIX_ATTEMPT".into(), ctx.fix_attempt.to_string()));
        let spec = CommandSpec {
            command: self.command.clone(),
            cwd: ctx.worktree.path.clone(),
            env,
            stdin: Some(ctx.prompt.clone().into_bytes()),
            stdout: ctx.output_dir.join("proposer.out"),
            stderr: ctx.output_dir.join("proposer.err"),
            timeout: Some(self.timeout),
            limits: Limits {
                cpus: ctx.cpus.clone(),
                ..Limits::default()
            },
            tag: ctx.tag.clone(),
            count_instructions: false,
        };
        let outcome = ctx
            .executor
            .run(&spec, ctx.cancel)
            .with_context(|| format!("starting the agent `{}`", self.command))?;
        let failure = if outcome.exit.success() {
            None
        } else {
            let tail = tail_lines(&ctx.output_dir.join("proposer.err"), 5);
            Some(format!(
                "agent {}{}",
                outcome.exit.describe(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            ))
        };
        let description = std::fs::read_to_string(&desc_file)
            .ok()
            .and_then(|t| {
                t.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                format!(
                    "experiment {} (the agent wrote no description)",
                    ctx.experiment
                )
            });
        let hypothesis = std::fs::read_to_string(&proposal_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        Ok(Proposed::Change(Box::new(Proposal {
            description,
            hypothesis,
            key: None,
            command: Some(CommandRecord {
                role: "proposer".into(),
                outcome,
                value: None,
                lock_wait_ms: None,
                tree: None,
                froze: None,
            }),
            failure,
        })))
    }
}

/// The last `n` non-empty lines of a file, joined with " | ".
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
