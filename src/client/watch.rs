//! `arctl watch [RUN]`: follow runs until they end. In a terminal: one live progress bar
//! per run (indicatif, redrawn in place); otherwise one plain line per change. Ctrl-C only
//! stops the watching: the runs go on in the daemon.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::render::duration_ms;
use super::{expect_ok, unexpected, Client, CmdResult, Error};
use crate::protocol::format::{format_metric, pct_or_dash as pct};
use crate::protocol::{Request, Response};
use crate::protocol::{RunState, RunSummary};

/// How often the daemon is asked.
const POLL: Duration = Duration::from_millis(250);

/// Follow `run` (or every active run, and any started meanwhile) until they end. Exit 0, or
/// 1 when a watched run failed, or 130 on Ctrl-C.
pub async fn watch(client: &mut Client, run: Option<String>) -> CmdResult {
    let bars = std::io::stdout().is_terminal();
    let mut view: Box<dyn View> = if bars {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::default())
    };
    let result = tokio::select! {
        r = follow(client, run, view.as_mut()) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::interrupted("stopped watching; the runs go on (arctl status)")),
    };
    view.close();
    result
}

async fn status(client: &mut Client) -> Result<Vec<RunSummary>, Error> {
    match expect_ok(client.call(&Request::Status { run: None }).await?)? {
        Response::Status { runs, .. } => Ok(runs),
        other => Err(unexpected(other)),
    }
}

async fn follow(client: &mut Client, run: Option<String>, view: &mut dyn View) -> CmdResult {
    let mut followed: Vec<String> = Vec::new();
    let mut ended: BTreeMap<String, RunState> = BTreeMap::new();
    let mut first = true;
    loop {
        let runs = status(client).await?;
        match &run {
            Some(id) => {
                if !runs.iter().any(|r| r.id == *id) {
                    return Err(Error::bad_input(format!(
                        "no run {id:?} (arctl status lists them)"
                    )));
                }
                if followed.is_empty() {
                    followed.push(id.clone());
                }
            }
            None => {
                // The runs active now, and any that start while watching.
                for r in &runs {
                    if r.state.is_active() && !followed.contains(&r.id) {
                        followed.push(r.id.clone());
                    }
                }
                if first && followed.is_empty() {
                    println!("no active runs; `arctl status` lists them all");
                    return Ok(());
                }
            }
        }
        first = false;
        view.widen(followed.iter().map(String::len).max().unwrap_or(0));
        for r in runs.iter().filter(|r| followed.contains(&r.id)) {
            if ended.contains_key(&r.id) {
                continue;
            }
            view.update(r);
            if !r.state.is_active() {
                ended.insert(r.id.clone(), r.state);
                view.ended(r);
            }
        }
        if followed.iter().all(|id| ended.contains_key(id)) {
            let failed: Vec<&String> = ended
                .iter()
                .filter(|(_, s)| **s == RunState::Failed)
                .map(|(id, _)| id)
                .collect();
            if failed.is_empty() {
                return Ok(());
            }
            view.close();
            return Err(Error::failed(format!(
                "run{} {} failed (arctl status {} shows why)",
                if failed.len() == 1 { "" } else { "s" },
                failed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                failed[0]
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// "exp 3/8" or "exp 3".
fn experiments(r: &RunSummary) -> String {
    match r.max_experiments {
        Some(m) => format!("{}/{m}", r.experiments),
        None => r.experiments.to_string(),
    }
}

/// The best in the baseline's terms with its change measured at the same time, and the
/// words when the machine is unstable.
fn best(r: &RunSummary) -> String {
    let shown = r.best_estimate.or(r.best);
    let mut s = match (shown, r.baseline) {
        (Some(b), Some(_)) => format!("best {} ({})", format_metric(Some(b)), pct(r.change)),
        (Some(b), None) => format!("best {}", format_metric(Some(b))),
        _ => "no baseline yet".into(),
    };
    if let Some(m) = &r.noise.message {
        s.push_str(&format!(" · {m}"));
    }
    s
}

/// The closing line of a run.
fn summary(r: &RunSummary) -> String {
    let c = &r.counts;
    let mut s = format!(
        "{} {}: {} experiment{} (kept {}, discarded {}, crashed {}, rejected {}); baseline {} -> {}",
        r.id,
        r.state.as_str(),
        r.experiments,
        if r.experiments == 1 { "" } else { "s" },
        c.kept,
        c.discarded,
        c.crashed,
        c.rejected,
        r.baseline.map(|v| format_metric(Some(v))).unwrap_or_else(|| "-".into()),
        best(r),
    );
    if let Some(why) = r.error.as_ref().or(r.stop_reason.as_ref()) {
        s.push_str(&format!("; {why}"));
    }
    s
}

trait View {
    /// The longest run id to make room for.
    fn widen(&mut self, width: usize);
    fn update(&mut self, r: &RunSummary);
    fn ended(&mut self, r: &RunSummary);
    fn close(&mut self) {}
}

/// Not a terminal: one line whenever something but the clocks changed.
#[derive(Default)]
struct Lines {
    last: BTreeMap<String, String>,
    /// Widest run id so far, so the columns line up.
    width: usize,
}

impl View for Lines {
    fn widen(&mut self, width: usize) {
        self.width = self.width.max(width);
    }

    fn update(&mut self, r: &RunSummary) {
        let key = format!(
            "{}  exp {}  {}  {}  last {}",
            r.state.as_str(),
            experiments(r),
            r.step_text(),
            best(r),
            r.last_status.as_deref().unwrap_or("-")
        );
        if self.last.get(&r.id) != Some(&key) {
            let now = chrono::Local::now().format("%H:%M:%S");
            println!("{now}  {:<w$}  {key}", r.id, w = self.width);
            let _ = std::io::stdout().flush();
            self.last.insert(r.id.clone(), key);
        }
    }

    fn ended(&mut self, r: &RunSummary) {
        println!("{}", summary(r));
        let _ = std::io::stdout().flush();
    }
}

/// A terminal: a bar per run (a spinner when there is no experiment budget).
struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    width: usize,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: BTreeMap::new(),
            width: 8,
        }
    }

    fn bar(&mut self, r: &RunSummary) -> &ProgressBar {
        if !self.bars.contains_key(&r.id) {
            let (pb, template) = match r.max_experiments {
                Some(m) => (
                    ProgressBar::new(m as u64),
                    format!("{{spinner:.green}} {{prefix:<{w}.bold}} [{{bar:24.cyan/blue}}] {{pos:>3}}/{{len:<3}} {{msg}}", w = self.width),
                ),
                None => (
                    ProgressBar::new_spinner(),
                    format!("{{spinner:.green}} {{prefix:<{w}.bold}} {{pos:>3}} exp {{msg}}", w = self.width),
                ),
            };
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let pb = self.multi.add(pb);
            pb.set_style(style);
            pb.set_prefix(r.id.clone());
            pb.enable_steady_tick(Duration::from_millis(120));
            self.bars.insert(r.id.clone(), pb);
        }
        &self.bars[&r.id]
    }
}

impl View for Bars {
    fn widen(&mut self, width: usize) {
        self.width = self.width.max(width);
    }

    fn update(&mut self, r: &RunSummary) {
        let pb = self.bar(r);
        pb.set_position(r.experiments as u64);
        let state = match r.state {
            RunState::Running | RunState::Starting => String::new(),
            other => format!("[{}] ", other.as_str()),
        };
        pb.set_message(format!(
            "{state}{} · {} {} · last {}",
            best(r),
            r.step_text(),
            duration_ms(r.step_elapsed_ms),
            r.last_status.as_deref().unwrap_or("-")
        ));
    }

    fn ended(&mut self, r: &RunSummary) {
        let pb = self.bar(r);
        pb.disable_steady_tick();
        pb.finish_with_message(format!("{} · {}", r.state.as_str(), best(r)));
        let line = summary(r);
        let _ = self.multi.println(line);
    }

    fn close(&mut self) {
        if self.bars.is_empty() {
            return;
        }
        for pb in self.bars.values() {
            pb.disable_steady_tick();
            if !pb.is_finished() {
                pb.abandon();
            }
        }
        self.bars.clear();
        // indicatif leaves the cursor at the end of the last bar.
        println!();
    }
}
