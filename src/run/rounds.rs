//! Comparing a candidate with the best, built on [`Meter::once_within`]: the strict
//! comparison of deterministic mode (re-measured before a keep: a value that moves means the
//! metric is noisy after all) and the paired, alternating rounds of noisy mode, where a
//! failure of the best tree is retried instead of blamed on the candidate and each run's
//! timeout follows its partner's time in the same round.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::exec::{self, Cancel, Exit};
use crate::protocol::format::format_metric;
use crate::run::journal::CommandRecord;
use crate::run::measure::{Measured, Meter, Once, Reference};
use crate::stats::{self, DecisionConfig, Evaluation, Mode, Verdict};

/// How many times a round is measured again when the best tree failed in it (or the
/// candidate timed out on a machine that had slowed down) before the measurement gives up.
pub const MAX_ROUND_RETRIES: usize = 2;

/// The candidate's value, its record, and the best's time if the best was measured to
/// judge a timeout.
type CandidateRun = (f64, CommandRecord, Option<Duration>);

/// One round's outcome.
enum Round {
    Pair(f64, f64),
    /// The best tree failed: why, its last output lines, and whether it timed out.
    BestFailed(String, String, bool),
    /// Not the candidate's fault either way (it timed out while its partner also slowed):
    /// measure the round again.
    Retry(String),
    /// The candidate's own failure.
    Crash(String, String),
    Interrupted,
}

/// What a round's timeouts are made of: the best's latest time (updated by the round) and
/// the factor a retry grants on top.
struct Timing<'t> {
    best_time: &'t mut Option<Duration>,
    slack: f64,
}

impl Meter<'_> {
    /// Measure `candidate` against `best` by the run's mode: one strict comparison
    /// (deterministic; a reference tree is measured once first), or paired rounds (noisy;
    /// `progress` sees each round's evaluation).
    #[allow(clippy::too_many_arguments)]
    pub fn compare(
        &self,
        mode: &Mode,
        best: Reference,
        candidate: &Path,
        cfg: &DecisionConfig,
        fewer_lines: bool,
        cancel: &Cancel,
        progress: impl FnMut(usize, &Evaluation),
    ) -> Result<Measured> {
        match (mode, best) {
            (Mode::Deterministic, Reference::Stored(v, tree)) => {
                self.deterministic(v, Some(tree), candidate, cfg, fewer_lines, cancel)
            }
            (Mode::Noisy { .. }, Reference::Stored(_, tree)) => {
                let tree = tree()?;
                self.paired(&tree, candidate, cfg, fewer_lines, cancel, progress)
            }
            (Mode::Deterministic, Reference::Tree(tree)) => {
                let mut records = Vec::new();
                match self.once_patient(tree, "best", cancel, &mut records)? {
                    Once::Value(v, r) => {
                        let here = || Ok(tree.to_path_buf());
                        let mut m = self.deterministic(
                            v,
                            Some(&here),
                            candidate,
                            cfg,
                            fewer_lines,
                            cancel,
                        )?;
                        m.prepend(r);
                        for r in records.into_iter().rev() {
                            m.prepend(r);
                        }
                        Ok(m)
                    }
                    Once::Failed(reason, tail, r) => {
                        records.push(r);
                        Ok(Measured::BestFailed {
                            reason,
                            tail,
                            records,
                        })
                    }
                    Once::Interrupted => Ok(Measured::Interrupted),
                }
            }
            (Mode::Noisy { .. }, Reference::Tree(tree)) => {
                self.paired(tree, candidate, cfg, fewer_lines, cancel, progress)
            }
        }
    }

    /// Deterministic mode: one run of the candidate, strictly compared with `best_value`.
    /// Before a keep, when the best's tree is given, the best and the candidate are measured
    /// once more: either value moving means the metric is not deterministic
    /// ([`Measured::NotDeterministic`]), and nothing is kept on it.
    pub fn deterministic(
        &self,
        best_value: f64,
        best_tree: Option<&dyn Fn() -> Result<PathBuf>>,
        tree: &Path,
        cfg: &DecisionConfig,
        fewer_lines: bool,
        cancel: &Cancel,
    ) -> Result<Measured> {
        let mut records = Vec::new();
        let (v, r, best_took) = match self.candidate_once(best_tree, tree, cancel, &mut records)? {
            Ok(x) => x,
            Err(m) => return Ok(m),
        };
        let evaluation = stats::evaluate_deterministic(best_value, v, cfg, fewer_lines);
        // The runs again are allowed their factor of what the machine takes now.
        let took = Duration::from_millis(r.outcome.wall_ms);
        let allowed = self
            .timeout
            .timeout(Some(best_took.map_or(took, |b| b.max(took))));
        records.push(r);
        if let (Verdict::Keep, Some(best_tree)) = (evaluation.verdict, best_tree) {
            let best_tree = best_tree()?;
            let again = [
                (best_tree.as_path(), "best", best_value),
                (tree, "candidate", v),
            ];
            let mut values = vec![best_value, v];
            for (t, role, before) in again {
                match self.once_within(t, role, allowed, cancel)? {
                    Once::Value(now, r) => {
                        records.push(r);
                        values.push(now);
                        if now != before {
                            let detail = format!(
                                "the {role} measured {} again, {} before",
                                format_metric(Some(now)),
                                format_metric(Some(before))
                            );
                            return Ok(Measured::NotDeterministic {
                                detail,
                                values,
                                records,
                            });
                        }
                    }
                    Once::Failed(reason, tail, r) => {
                        records.push(r);
                        return Ok(if role == "best" {
                            Measured::BestFailed {
                                reason,
                                tail,
                                records,
                            }
                        } else {
                            Measured::Crash {
                                reason,
                                tail,
                                records,
                            }
                        });
                    }
                    Once::Interrupted => return Ok(Measured::Interrupted),
                }
            }
        }
        Ok(Measured::Value {
            value: v,
            evaluation,
            records,
            best_tree: None,
        })
    }

    /// One run of a reference tree with no reference time measured now: a timeout is tried
    /// again with twice the time, up to [`MAX_ROUND_RETRIES`] times (the machine may have
    /// slowed down since the baseline); the timed-out runs go to `records`.
    fn once_patient(
        &self,
        tree: &Path,
        role: &str,
        cancel: &Cancel,
        records: &mut Vec<CommandRecord>,
    ) -> Result<Once> {
        let mut allowed = self.timeout.timeout(None);
        for attempt in 0..=MAX_ROUND_RETRIES {
            match self.once_within(tree, role, allowed, cancel)? {
                Once::Failed(reason, _, r)
                    if r.outcome.exit == Exit::TimedOut && attempt < MAX_ROUND_RETRIES =>
                {
                    records.push(r);
                    self.note(&format!(
                        "the {role} {reason}; measuring it again with twice the time"
                    ));
                    allowed *= 2;
                }
                other => return Ok(other),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The candidate's one run of deterministic mode. A timeout is checked against the
    /// machine: the best, measured now with twice the room, shows whether everything got
    /// slower (then the candidate runs again, allowed its factor of the best's time now).
    fn candidate_once(
        &self,
        best_tree: Option<&dyn Fn() -> Result<PathBuf>>,
        tree: &Path,
        cancel: &Cancel,
        records: &mut Vec<CommandRecord>,
    ) -> Result<std::result::Result<CandidateRun, Measured>> {
        let allowed = self.timeout.timeout(None);
        let crash = |reason, tail, r: CommandRecord, mut records: Vec<CommandRecord>| {
            records.push(r);
            Measured::Crash {
                reason,
                tail,
                records,
            }
        };
        let (reason, tail, r) = match self.once_within(tree, "candidate", allowed, cancel)? {
            Once::Value(v, r) => return Ok(Ok((v, r, None))),
            Once::Interrupted => return Ok(Err(Measured::Interrupted)),
            Once::Failed(reason, tail, r) => (reason, tail, r),
        };
        let Some(best) = best_tree.filter(|_| r.outcome.exit == Exit::TimedOut) else {
            return Ok(Err(crash(reason, tail, r, std::mem::take(records))));
        };
        records.push(r);
        let best = best()?;
        let took = match self.once_within(&best, "best", allowed * 2, cancel)? {
            Once::Value(_, b) => {
                let took = Duration::from_millis(b.outcome.wall_ms);
                records.push(b);
                took
            }
            Once::Failed(why, tail, b) => {
                records.push(b);
                return Ok(Err(Measured::BestFailed {
                    reason: why,
                    tail,
                    records: std::mem::take(records),
                }));
            }
            Once::Interrupted => return Ok(Err(Measured::Interrupted)),
        };
        if !self.timeout.stale(allowed, took) {
            let reason = format!("{reason} (the best took {:.1}s now)", took.as_secs_f64());
            return Ok(Err(Measured::Crash {
                reason,
                tail,
                records: std::mem::take(records),
            }));
        }
        self.note(&format!(
            "the candidate {reason}, but the best took {:.1}s now: the machine slowed down; measuring the candidate again",
            took.as_secs_f64()
        ));
        let again = self.timeout.timeout(Some(took));
        match self.once_within(tree, "candidate", again, cancel)? {
            Once::Value(v, r) => Ok(Ok((v, r, Some(took)))),
            Once::Interrupted => Ok(Err(Measured::Interrupted)),
            Once::Failed(reason, tail, r) => {
                Ok(Err(crash(reason, tail, r, std::mem::take(records))))
            }
        }
    }

    /// Noisy mode: measure the best (in `best`) and the candidate (in `candidate`) in the same
    /// rounds, alternating the order (AB, BA, ...) so drift hits both alike, until
    /// [`stats::evaluate_noisy`] decides. A round the best fails in, or where the candidate
    /// timed out while its partner slowed down too, is measured again (up to
    /// [`MAX_ROUND_RETRIES`] times in a row). `progress` sees each round's evaluation.
    pub fn paired(
        &self,
        best: &Path,
        candidate: &Path,
        cfg: &DecisionConfig,
        fewer_lines: bool,
        cancel: &Cancel,
        mut progress: impl FnMut(usize, &Evaluation),
    ) -> Result<Measured> {
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        let mut records = Vec::new();
        // The best's latest time: the timeout's reference until this round measures it.
        let mut best_time: Option<Duration> = None;
        let mut retries = 0;
        // A best that timed out before anything was measured now (the first run of an
        // experiment on a machine that slowed down) gets twice the time at each retry.
        let mut slack = 1.0;
        while pairs.len() < cfg.max_rounds() {
            let round = pairs.len() + 1;
            let t = Timing {
                best_time: &mut best_time,
                slack,
            };
            let outcome = self.round(round, best, candidate, t, cancel, &mut records)?;
            let (why, tail) = match outcome {
                Round::Pair(b, c) => {
                    retries = 0;
                    slack = 1.0;
                    pairs.push((b, c));
                    let ev = stats::evaluate_noisy(&pairs, cfg, fewer_lines);
                    progress(round, &ev);
                    if ev.verdict != Verdict::Continue {
                        return Ok(Measured::Value {
                            value: ev.candidate_estimate,
                            evaluation: ev,
                            records,
                            best_tree: None,
                        });
                    }
                    continue;
                }
                Round::Crash(reason, tail) => {
                    return Ok(Measured::Crash {
                        reason,
                        tail,
                        records,
                    })
                }
                Round::Interrupted => return Ok(Measured::Interrupted),
                Round::BestFailed(why, tail, timed_out) => {
                    if timed_out {
                        slack *= 2.0;
                    }
                    (format!("the best failed: {why}"), tail)
                }
                Round::Retry(why) => (why, String::new()),
            };
            retries += 1;
            if retries > MAX_ROUND_RETRIES {
                return Ok(Measured::BestFailed {
                    reason: format!("{why} ({retries} attempts of round {round})"),
                    tail,
                    records,
                });
            }
            self.note(&format!(
                "round {round}: {why}; measuring the round again ({retries} of {MAX_ROUND_RETRIES})"
            ));
        }
        unreachable!("evaluate_noisy decides at the last round")
    }

    /// One round: both trees, in this round's order, each allowed its factor of the
    /// partner's time. A candidate that timed out is blamed only when the best, measured in
    /// the same round, ran well within the factor of the time the candidate was allowed.
    fn round(
        &self,
        round: usize,
        best: &Path,
        candidate: &Path,
        t: Timing,
        cancel: &Cancel,
        records: &mut Vec<CommandRecord>,
    ) -> Result<Round> {
        let Timing { best_time, slack } = t;
        // Both trees of a round run together (on a cluster: one allocation, one node).
        let _round = exec::Group::new(self.executor, 2);
        let best_first = round % 2 == 1;
        let mut pair = (f64::NAN, f64::NAN);
        let mut partner: Option<Duration> = None;
        // The candidate's failure, held until the best of the round has been measured.
        let mut failed: Option<(String, String, Duration)> = None;
        let order = if best_first {
            [true, false]
        } else {
            [false, true]
        };
        for is_best in order {
            let (tree, role) = if is_best {
                (best, "best")
            } else {
                (candidate, "candidate")
            };
            let reference = partner.or(*best_time);
            let allowed = self.timeout.timeout(reference).mul_f64(slack);
            match self.once_within(tree, role, allowed, cancel)? {
                Once::Value(v, r) => {
                    let took = Duration::from_millis(r.outcome.wall_ms);
                    records.push(r);
                    partner = Some(took);
                    if is_best {
                        *best_time = Some(took);
                        pair.0 = v;
                    } else {
                        pair.1 = v;
                    }
                }
                Once::Failed(reason, tail, r) => {
                    let timed_out = r.outcome.exit == Exit::TimedOut;
                    records.push(r);
                    if is_best {
                        return Ok(Round::BestFailed(reason, tail, timed_out));
                    }
                    if !timed_out {
                        return Ok(Round::Crash(reason, tail));
                    }
                    failed = Some((reason, tail, allowed));
                }
                Once::Interrupted => return Ok(Round::Interrupted),
            }
        }
        let Some((reason, tail, allowed)) = failed else {
            return Ok(Round::Pair(pair.0, pair.1));
        };
        let best_now = best_time.expect("the best was measured in this round");
        if self.timeout.stale(allowed, best_now) {
            return Ok(Round::Retry(format!(
                "the candidate {reason}, but the best took {:.1}s in the same round: the machine slowed down",
                best_now.as_secs_f64()
            )));
        }
        Ok(Round::Crash(
            format!(
                "{reason} (the best took {:.1}s in the same round)",
                best_now.as_secs_f64()
            ),
            tail,
        ))
    }
}
