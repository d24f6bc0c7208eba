//! The params proposer: a search over declared values of parameters in files, by hill
//! climbing (one parameter one step from the best) or at random; never the same
//! combination twice, even after a restart (the journal's keys say what was tried).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{Proposal, ProposeContext, Proposed, Proposer};
use crate::run::journal::{ExperimentRecord, Status};
use crate::spec::{ParamSpec, SearchStrategy};

/// Search over declared values of parameters in files: hill climbing (one parameter one
/// step away from the best) or random combinations; never the same combination twice.
pub(super) struct Params {
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
    pub(super) fn new(
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
    fn combo_keys_round_trip() {
        assert_eq!(combo_of(&key_of(&[1, 0, 12])), Some(vec![1, 0, 12]));
    }
}
