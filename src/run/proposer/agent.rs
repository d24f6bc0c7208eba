//! The agent proposer: any command (`claude -p`, `codex exec`, `aider ...`), a fresh
//! process per experiment in the worktree, the rendered prompt on stdin.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Proposal, ProposeContext, Proposed, Proposer};
use crate::exec::{CommandSpec, Limits};
use crate::run::journal::CommandRecord;
use crate::spec::presets::{self, Usage};

/// Any command (`claude -p`, `codex exec`, `aider ...`): prompt on stdin, a fresh process
/// per experiment, in the worktree.
pub(super) struct Agent {
    pub(super) command: String,
    pub(super) timeout: std::time::Duration,
    /// How its preset reports usage on stdout (None: only the proposal file says).
    pub(super) usage: Option<Usage>,
}

impl Proposer for Agent {
    fn can_fix(&self) -> bool {
        true
    }

    fn propose(&mut self, ctx: &ProposeContext) -> Result<Proposed> {
        // In the private temp dir, not the state dir: nothing leads the agent there.
        let desc_file = ctx.scratch.join("description.txt");
        let proposal_file = ctx.scratch.join("proposal.json");
        let _ = std::fs::remove_file(&desc_file);
        let _ = std::fs::remove_file(&proposal_file);
        let mut env = ctx.env.clone();
        env.push(("TMPDIR".into(), ctx.scratch.display().to_string()));
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
            exclusive: false,
        };
        let outcome = ctx
            .executor
            .run(&spec, ctx.cancel)
            .with_context(|| format!("starting the agent `{}`", self.command))?;
        let failure = if outcome.exit.success() {
            None
        } else {
            let tail = crate::store::tail_lines(&ctx.output_dir.join("proposer.err"), 5);
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
        let description = read_capped(&desc_file)
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
        let mut hypothesis =
            read_capped(&proposal_file).and_then(|t| serde_json::from_str(&t).ok());
        if let Some(usage) = self.usage {
            let stdout = read_capped_tail(&ctx.output_dir.join("proposer.out"));
            add_usage(&mut hypothesis, presets::read_usage(usage, &stdout));
        }
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

/// The agent's description and proposal files are read up to this size (a description is
/// one line; a proposal a small JSON object): a file of gigabytes costs nothing.
const MAX_AGENT_FILE: u64 = 64 * 1024;

/// A file's text, at most [`MAX_AGENT_FILE`] bytes of it.
fn read_capped(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_AGENT_FILE)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last [`MAX_AGENT_FILE`] bytes of a file (a tool's final usage report is at its end).
fn read_capped_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(MAX_AGENT_FILE)));
    let mut bytes = Vec::new();
    let _ = f.take(MAX_AGENT_FILE).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the tool reported spending goes beside the proposal (where any proposer may put
/// `cost_usd` and `tokens` itself); the agent's own figures win.
fn add_usage(hypothesis: &mut Option<serde_json::Value>, spent: presets::Spent) {
    if spent == presets::Spent::default() {
        return;
    }
    let h = hypothesis.get_or_insert_with(|| serde_json::json!({}));
    let Some(obj) = h.as_object_mut() else {
        return;
    };
    if let Some(c) = spent.cost_usd {
        obj.entry("cost_usd").or_insert(serde_json::json!(c));
    }
    if let Some(t) = spent.tokens {
        obj.entry("tokens").or_insert(serde_json::json!(t));
    }
}
