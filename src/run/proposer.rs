//! Proposers: what makes the change of each experiment. An AI agent command, a folder of
//! patches, or a search over parameter values in files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::exec::{self, Cancel, CommandSpec, Limits};
use crate::git::WorkTree;
use crate::run::journal::{CommandRecord, ExperimentRecord, Status};
use crate::spec::{ParamSpec, ProposerKind, ResolvedSpec, SearchStrategy};

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

// ---------------------------------------------------------------------------------------

/// Any command (`claude -p`, `codex exec`, `aider ...`): prompt on stdin, a fresh process
/// per experiment, in the worktree.
struct Agent {
    command: String,
    timeout: std::time::Duration,
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

// ---------------------------------------------------------------------------------------

/// Each `*.patch` of a folder, once, in name order.
struct Patches {
    files: Vec<PathBuf>,
    tried: HashSet<String>,
}

impl Patches {
    fn new(dir: &Path, records: &[ExperimentRecord]) -> Result<Patches> {
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

// ---------------------------------------------------------------------------------------

/// Search over declared values of parameters in files: hill climbing (one parameter one
/// step away from the best) or random combinations; never the same combination twice.
struct Params {
    params: Vec<ParamSpec>,
    candidates: Vec<Vec<String>>,
    strategy: SearchStrategy,
    rng: StdRng,
    tried: HashSet<Vec<usize>>,
    /// The best combination so far (indices), once known.
    best: Option<Vec<usize>>,
    /// The combination proposed last, to learn whether it was kept.
    pending: Option<Vec<usize>>,
}

fn key_of(combo: &[usize]) -> String {
    combo
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn combo_of(key: &str) -> Option<Vec<usize>> {
    key.split(',').map(|s| s.parse().ok()).collect()
}

impl Params {
    fn new(
        params: Vec<ParamSpec>,
        strategy: SearchStrategy,
        seed: Option<u64>,
        records: &[ExperimentRecord],
    ) -> Params {
        let candidates = params.iter().map(|p| p.candidates()).collect();
        let mut me = Params {
            params,
            candidates,
            strategy,
            rng: StdRng::seed_from_u64(seed.unwrap_or_else(rand::random)),
            tried: HashSet::new(),
            best: None,
            pending: None,
        };
        for r in records {
            if let Some(c) = r.proposal_key.as_deref().and_then(combo_of) {
                if r.status == Status::Keep {
                    me.best = Some(c.clone());
                }
                me.tried.insert(c);
            }
        }
        me
    }

    /// The values in the files now, as indices into the candidates (None if not a candidate).
    fn current(&self, wt: &Path) -> Result<Vec<Option<usize>>> {
        self.params
            .iter()
            .zip(&self.candidates)
            .map(|(p, cands)| {
                let text = std::fs::read_to_string(wt.join(&p.file)).with_context(|| {
                    format!("param {}: reading {}", p.display_name(), p.file.display())
                })?;
                let caps = p.regex.0.captures(&text).ok_or_else(|| {
                    anyhow!(
                        "param {}: regex {:?} matches nothing in {}",
                        p.display_name(),
                        p.regex.0.as_str(),
                        p.file.display()
                    )
                })?;
                let v = caps.get(1).map(|m| m.as_str()).unwrap_or("");
                Ok(cands.iter().position(|c| {
                    c == v
                        || c.parse::<f64>()
                            .ok()
                            .zip(v.parse::<f64>().ok())
                            .map(|(a, b)| a == b)
                            .unwrap_or(false)
                }))
            })
            .collect()
    }

    fn neighbours(&self, from: &[usize]) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for (i, &v) in from.iter().enumerate() {
            for d in [-1i64, 1] {
                let n = v as i64 + d;
                if n >= 0 && (n as usize) < self.candidates[i].len() {
                    let mut c = from.to_vec();
                    c[i] = n as usize;
                    out.push(c);
                }
            }
        }
        out
    }

    fn random_untried(&mut self) -> Option<Vec<usize>> {
        let total: usize = self.candidates.iter().map(|c| c.len().max(1)).product();
        if self.tried.len() >= total {
            return None;
        }
        for _ in 0..1000 {
            let c: Vec<usize> = self
                .candidates
                .iter()
                .map(|c| self.rng.gen_range(0..c.len().max(1)))
                .collect();
            if !self.tried.contains(&c) {
                return Some(c);
            }
        }
        // Dense search space: enumerate.
        let mut c = vec![0usize; self.candidates.len()];
        loop {
            if !self.tried.contains(&c) {
                return Some(c);
            }
            let mut i = 0;
            loop {
                if i == c.len() {
                    return None;
                }
                c[i] += 1;
                if c[i] < self.candidates[i].len() {
                    break;
                }
                c[i] = 0;
                i += 1;
            }
        }
    }
}

impl Proposer for Params {
    fn propose(&mut self, ctx: &ProposeContext) -> Result<Proposed> {
        // Learn from the previous proposal's fate (the records are the truth).
        if let Some(p) = self.pending.take() {
            if ctx
                .records
                .iter()
                .any(|r| r.status == Status::Keep && r.proposal_key.as_deref() == Some(&key_of(&p)))
            {
                self.best = Some(p);
            }
        }
        let current = self.current(&ctx.worktree.path)?;
        let start: Vec<usize> = match &self.best {
            Some(b) => b.clone(),
            None => current
                .iter()
                .zip(&self.candidates)
                .map(|(c, cands)| c.unwrap_or(cands.len() / 2))
                .collect(),
        };
        if self.best.is_none() && current.iter().all(Option::is_some) {
            // The starting values count as tried: they are the baseline.
            self.tried.insert(start.clone());
        }
        let next = match self.strategy {
            SearchStrategy::HillClimb => {
                let mut n = self.neighbours(&start);
                n.retain(|c| !self.tried.contains(c));
                n.shuffle(&mut self.rng);
                match n.into_iter().next() {
                    Some(c) => Some(c),
                    None => self.random_untried(),
                }
            }
            SearchStrategy::Random => self.random_untried(),
        };
        let Some(next) = next else {
            return Ok(Proposed::Exhausted(
                "every parameter combination has been tried".into(),
            ));
        };
        self.tried.insert(next.clone());
        self.pending = Some(next.clone());

        let mut parts = Vec::new();
        for (i, p) in self.params.iter().enumerate() {
            let path = ctx.worktree.path.join(&p.file);
            let text = std::fs::read_to_string(&path)?;
            let caps =
                p.regex.0.captures(&text).ok_or_else(|| {
                    anyhow!("param {}: regex no longer matches", p.display_name())
                })?;
            let m = caps
                .get(1)
                .ok_or_else(|| anyhow!("param {}: regex has no group", p.display_name()))?;
            let new = &self.candidates[i][next[i]];
            if m.as_str() != new {
                parts.push(format!("{}={} (was {})", p.display_name(), new, m.as_str()));
                let mut out = String::with_capacity(text.len());
                out.push_str(&text[..m.start()]);
                out.push_str(new);
                out.push_str(&text[m.end()..]);
                std::fs::write(&path, out)?;
            }
        }
        Ok(Proposed::Change(Box::new(Proposal {
            description: if parts.is_empty() {
                "parameters unchanged".into()
            } else {
                format!("set {}", parts.join(", "))
            },
            key: Some(key_of(&next)),
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

    #[test]
    fn combo_keys_round_trip() {
        assert_eq!(combo_of(&key_of(&[1, 0, 12])), Some(vec![1, 0, 12]));
    }
}
