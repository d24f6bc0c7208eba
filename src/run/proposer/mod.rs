//! Proposers: what makes the change of each experiment. An AI agent command (`agent`), a
//! folder of patches (`patches`), or a search over parameter values in files (`params`),
//! each behind the one trait the loop sees.

mod agent;
mod params;
mod patches;

use std::path::Path;

use anyhow::{Context, Result};

use crate::exec::{self, Cancel};
use crate::git::WorkTree;
use crate::run::journal::{CommandRecord, ExperimentRecord};
use crate::spec::{ProposerKind, ResolvedSpec};
use agent::Agent;
use params::Params;
use patches::Patches;

/// What a proposer did in the worktree.
#[derive(Debug, Default)]
pub struct Proposal {
    pub description: String,
    pub hypothesis: Option<serde_json::Value>,
    /// Built-in proposers: what was tried, so it is never tried twice (even after a restart).
    pub key: Option<String>,
    pub command: Option<CommandRecord>,
    /// The proposer itself failed (agent exit code, timeout, patch that doesn't apply).
    pub failure: Option<String>,
}

pub enum Proposed {
    Change(Box<Proposal>),
    /// Nothing left to try: the run ends.
    Exhausted(String),
}

/// Everything a proposer may look at.
pub struct ProposeContext<'a> {
    pub experiment: u32,
    pub worktree: &'a WorkTree,
    pub records: &'a [ExperimentRecord],
    /// The rendered prompt (agent only).
    pub prompt: String,
    /// Extra environment (ARCTL_*).
    pub env: Vec<(String, String)>,
    pub output_dir: &'a Path,
    /// The proposer's private temp dir (its `TMPDIR`; the description and proposal files).
    pub scratch: &'a Path,
    pub tag: String,
    pub cancel: &'a Cancel,
    pub cpus: Option<Vec<usize>>,
    /// Quick-fix call: the attempt number (1..=2).
    pub fix_attempt: u32,
    /// Where the agent runs (this machine unless the spec puts it on a cluster).
    pub executor: &'a dyn exec::Executor,
}

pub trait Proposer: Send {
    fn propose(&mut self, ctx: &ProposeContext) -> Result<Proposed>;
    /// Can it be asked to fix a crashed experiment (agents can)?
    fn can_fix(&self) -> bool {
        false
    }
}

pub fn build(spec: &ResolvedSpec, records: &[ExperimentRecord]) -> Result<Box<dyn Proposer>> {
    let p = &spec.spec.proposer;
    Ok(match p.kind {
        ProposerKind::Agent => Box::new(Agent {
            command: p.command.clone().unwrap_or_default(),
            timeout: p.timeout.0,
            usage: p
                .preset
                .as_deref()
                .and_then(crate::spec::presets::find)
                .map(|p| p.usage),
        }),
        ProposerKind::Patches => Box::new(Patches::new(
            &spec.spec_relative(p.dir.as_deref().unwrap_or(Path::new("."))),
            records,
        )?),
        ProposerKind::Params => {
            Box::new(Params::new(p.params.clone(), p.strategy, p.seed, records))
        }
    })
}

/// The prompt template of a spec: its own file, or the built-in one.
pub fn template(spec: &ResolvedSpec) -> Result<String> {
    match &spec.spec.proposer.prompt {
        Some(p) => {
            let path = spec.spec_relative(p);
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading prompt template {}", path.display()))
        }
        None => Ok(crate::run::prompt::DEFAULT_TEMPLATE.to_string()),
    }
}
