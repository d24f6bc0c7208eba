//! `arctl watch [RUN]`: follow runs until they end. In a terminal: one live progress bar
//! per run (indicatif, redrawn in place); otherwise one plain line per change. Ctrl-C only
//! stops the watching: the runs go on in the daemon. Every line fits the terminal's width
//! (cut with an ellipsis; a redrawn bar that wrapped would smear over the screen) and shows
//! the time left by whichever budget ends first.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{expect_ok, unexpected, Client, CmdResult, Error};
use crate::protocol::format::{count, format_metric, pct_or_dash as pct};
use crate::protocol::{Request, Response};
use crate::protocol::{RunState, RunSummary};
use crate::text::render::{duration_ms, nothing_kept};

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
        (_, None) if r.state.is_active() => "no baseline yet".into(),
        (_, None) => "no baseline measured".into(),
        (_, Some(b)) if nothing_kept(r) => {
            let yet = if r.state.is_active() { " yet" } else { "" };
            format!("nothing kept{yet} (baseline {})", format_metric(Some(b)))
        }
        (Some(b), Some(_)) => format!("best {} ({})", format_metric(Some(b)), pct(r.change)),
        (None, Some(_)) => "best not measured".into(),
    };
    if let Some(m) = &r.noise.message {
        s.push_str(&format!(" · {m}"));
    }
    s
}

/// The closing line of a run.
fn summary(r: &RunSummary) -> String {
    let c = &r.counts;
    let outcome = match r.baseline {
        Some(b) if !nothing_kept(r) => {
            format!("baseline {} -> {}", format_metric(Some(b)), best(r))
        }
        _ => best(r),
    };
    let mut s = format!(
        "{} {} after {}: {} (kept {}, discarded {}, crashed {}, rejected {}); {outcome}",
        r.id,
        r.state.as_str(),
        duration_ms(r.elapsed_ms),
        count(r.experiments as usize, "experiment"),
        c.kept,
        c.discarded,
        c.crashed,
        c.rejected,
    );
    if let Some(why) = r.error.as_ref().or(r.stop_reason.as_ref()) {
        s.push_str(&format!("; {why}"));
    }
    s
}

/// Running time and the time left by the budget that ends first: "1m10s elapsed, ~2m05s
/// left (max_experiments)".
pub fn eta(r: &RunSummary) -> String {
    let elapsed = duration_ms(r.elapsed_ms);
    match time_left(r) {
        Some((ms, which)) => format!("{elapsed} elapsed, ~{} left ({which})", duration_ms(ms)),
        // No count or wall budget (or no experiment yet to time): other stop rules
        // (patience, max_cost) give no time to count down.
        None => format!("{elapsed} elapsed"),
    }
}

/// The time left and the budget that binds, when the budget says: the experiment budget's
/// share is the mean time per experiment so far (the baseline's time included, so it errs
/// long), `max_wall`'s is what remains of it.
fn time_left(r: &RunSummary) -> Option<(u64, &'static str)> {
    let elapsed = r.elapsed_ms;
    let by_count = r.max_experiments.and_then(|m| {
        let done = u64::from(r.experiments);
        (done > 0).then(|| {
            let left = elapsed / done * u64::from(m).saturating_sub(done);
            (left, "max_experiments")
        })
    });
    let by_wall = r
        .max_wall_ms
        .map(|w| (w.saturating_sub(elapsed), "max_wall"));
    match (by_count, by_wall) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The width lines must fit: the terminal's, else `COLUMNS`, else none (a pipe or a file
/// takes whole lines).
fn columns() -> Option<usize> {
    let term = std::io::stdout()
        .is_terminal()
        .then(|| console::Term::stdout().size_checked())
        .flatten()
        .map(|(_, cols)| cols as usize);
    term.or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
        .filter(|c| *c > 0)
}

/// `s` cut to `width` columns, its end replaced by an ellipsis when cut.
pub fn fit(s: &str, width: Option<usize>) -> String {
    match width {
        // console's truncate_str also cuts a line of exactly `w` (and needs room for the
        // ellipsis), hence the check first.
        Some(w) if console::measure_text_width(s) > w => {
            console::truncate_str(s, w.max(1), "…").into_owned()
        }
        _ => s.to_string(),
    }
}

/// `s` broken at spaces into lines of at most `width` columns, the later ones indented two
/// spaces (a word longer than a line is cut). The closing line is printed once, so it is
/// wrapped whole rather than cut.
pub fn wrap(s: &str, width: Option<usize>) -> String {
    let Some(w) = width else {
        return s.to_string();
    };
    let mut lines: Vec<String> = vec![String::new()];
    for word in s.split(' ') {
        let cur = lines.last_mut().expect("one line at least");
        let fresh = cur.trim().is_empty();
        if fresh || console::measure_text_width(cur) + 1 + console::measure_text_width(word) <= w {
            if !fresh {
                cur.push(' ');
            }
            cur.push_str(word);
        } else {
            lines.push(format!("  {word}"));
        }
    }
    lines
        .iter()
        .map(|l| fit(l, Some(w)))
        .collect::<Vec<_>>()
        .join("\n")
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
            let line = format!("{now}  {:<w$}  {key}  {}", r.id, eta(r), w = self.width);
            println!("{}", fit(&line, columns()));
            let _ = std::io::stdout().flush();
            self.last.insert(r.id.clone(), key);
        }
    }

    fn ended(&mut self, r: &RunSummary) {
        println!("{}", wrap(&summary(r), columns()));
        let _ = std::io::stdout().flush();
    }
}

/// A terminal: a bar per run (a spinner when there is no experiment budget).
struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    width: usize,
}

/// The bar's own columns: 24 on a wide terminal, 10 on a narrow one.
fn bar_len(cols: Option<usize>) -> usize {
    if cols.unwrap_or(80) >= 100 {
        24
    } else {
        10
    }
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: BTreeMap::new(),
            width: 8,
        }
    }

    /// Columns the template takes before `{msg}` (spinner, id, bar or count, spaces).
    fn fixed(&self, r: &RunSummary, cols: Option<usize>) -> usize {
        match r.max_experiments {
            // "s id [bar] pos/len "
            Some(_) => 1 + 1 + self.width + 2 + bar_len(cols) + 2 + 7 + 1,
            // "s id pos exp "
            None => 1 + 1 + self.width + 1 + 3 + 5,
        }
    }

    fn bar(&mut self, r: &RunSummary, cols: Option<usize>) -> &ProgressBar {
        if !self.bars.contains_key(&r.id) {
            let (pb, template) = match r.max_experiments {
                Some(m) => (
                    ProgressBar::new(m as u64),
                    format!("{{spinner:.green}} {{prefix:<{w}.bold}} [{{bar:{b}.cyan/blue}}] {{pos:>3}}/{{len:<3}} {{msg}}", w = self.width, b = bar_len(cols)),
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

    /// Room left for the message on a line of `cols` (one column spare: some terminals
    /// wrap on writing the last one).
    fn room(&self, r: &RunSummary, cols: Option<usize>) -> Option<usize> {
        cols.map(|c| c.saturating_sub(self.fixed(r, cols) + 1).max(1))
    }
}

impl View for Bars {
    fn widen(&mut self, width: usize) {
        self.width = self.width.max(width);
    }

    fn update(&mut self, r: &RunSummary) {
        let cols = columns();
        let room = self.room(r, cols);
        let pb = self.bar(r, cols);
        pb.set_position(r.experiments as u64);
        let state = match r.state {
            RunState::Running | RunState::Starting => String::new(),
            other => format!("[{}] ", other.as_str()),
        };
        // Most telling first: a narrow terminal cuts from the end.
        let left = time_left(r)
            .map(|(ms, _)| format!(" · ~{} left", duration_ms(ms)))
            .unwrap_or_default();
        let msg = format!(
            "{state}{}{left} · {} {} · last {} · {} elapsed",
            best(r),
            r.step_text(),
            duration_ms(r.step_elapsed_ms),
            r.last_status.as_deref().unwrap_or("-"),
            duration_ms(r.elapsed_ms)
        );
        pb.set_message(fit(&msg, room));
    }

    fn ended(&mut self, r: &RunSummary) {
        let cols = columns();
        let room = self.room(r, cols);
        let pb = self.bar(r, cols);
        pb.disable_steady_tick();
        pb.finish_with_message(fit(&format!("{} · {}", r.state.as_str(), best(r)), room));
        let line = wrap(&summary(r), cols.map(|c| c.saturating_sub(1)));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        experiments: u32,
        max: Option<u32>,
        max_wall_ms: Option<u64>,
        elapsed_ms: u64,
    ) -> RunSummary {
        let mut r: RunSummary = serde_json::from_value(serde_json::json!({
            "id": "r", "state": "running", "step": "proposing", "experiments": experiments,
            "max_experiments": max, "counts": {"kept": 0, "discarded": 0, "crashed": 0, "rejected": 0},
            "direction": "lower", "baseline": 10.0, "best": 10.0, "change": 0.0, "mode": null,
            "cv": null, "created_at_ms": 0, "elapsed_ms": elapsed_ms, "step_elapsed_ms": 0,
            "last_status": null, "worktree": "/w", "branch": "b", "recovered_at_ms": null,
            "error": null, "stop_reason": null, "sparkline": ""
        }))
        .unwrap();
        r.max_wall_ms = max_wall_ms;
        r
    }

    #[test]
    fn eta_follows_the_budget_that_ends_first() {
        // 4 of 10 in 40s: 60s left by count; a 5-minute wall ends later.
        assert_eq!(
            eta(&run(4, Some(10), Some(300_000), 40_000)),
            "40.0s elapsed, ~1m00s left (max_experiments)"
        );
        // A 50s wall ends first.
        assert_eq!(
            eta(&run(4, Some(10), Some(50_000), 40_000)),
            "40.0s elapsed, ~10.0s left (max_wall)"
        );
        // Nothing done yet: only the wall can say.
        assert_eq!(eta(&run(0, Some(10), None, 3_000)), "3.0s elapsed");
        assert_eq!(eta(&run(0, None, None, 3_000)), "3.0s elapsed");
    }

    #[test]
    fn lines_fit_their_width() {
        let long = "a · ".repeat(40);
        let cut = fit(&long, Some(80));
        assert_eq!(console::measure_text_width(&cut), 80);
        assert!(cut.ends_with('…'));
        assert_eq!(fit("short", Some(80)), "short");
        assert_eq!(fit(&"x".repeat(80), Some(80)), "x".repeat(80));
        let wrapped = wrap(&"word ".repeat(40), Some(30));
        assert!(wrapped.lines().count() > 1);
        assert!(wrapped
            .lines()
            .all(|l| console::measure_text_width(l) <= 30));
        assert!(wrapped.lines().skip(1).all(|l| l.starts_with("  ")));
    }
}
