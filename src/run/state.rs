//! A run's state machine in one place: the states a run passes through (`RunState`, the
//! wire type), the events that move it, the step an experiment is at, and the user's
//! requests (`Control`). `RunRecord::apply` is the only way a state changes, and
//! `RunHandle` the only writer of the record, so the daemon and the run's thread can never
//! overwrite each other's changes.
//!
//! ```text
//!  starting ──baseline──▶ running ◀──resumed── paused
//!      │                   │  ▲ └──paused──────▶ │
//!      └──────stop─────────┴──┴──▶ stopping ◀────┘
//!  any active ──finished / stopped / failed──▶ finished | stopped | failed (final)
//! ```

use serde::{Deserialize, Serialize};

pub use crate::protocol::{Counts, RunState};
use crate::run::journal::Status;

/// What moves a run from one state to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The baseline is recorded: the loop runs.
    BaselineDone,
    /// The loop starts an experiment (again, after a pause or a restart).
    Resumed,
    /// The loop saw a pause request and waits.
    Paused,
    /// The user asked to stop (after the current experiment, or now).
    StopRequested,
    /// The loop ended on a stop request.
    Stopped,
    /// The budget ended, or the proposer ran out of ideas.
    Finished,
    /// An error ended the run (or its recovery).
    Failed,
}

impl RunState {
    /// The state after `event`. Ended runs stay ended; a stop request is only undone by the
    /// end of the run.
    pub fn after(self, event: Event) -> RunState {
        use RunState::*;
        if !self.is_active() {
            return self;
        }
        match (self, event) {
            (_, Event::Failed) => Failed,
            (_, Event::Finished) => Finished,
            (_, Event::Stopped) => Stopped,
            (_, Event::StopRequested) | (Stopping, _) => Stopping,
            (Starting, Event::BaselineDone) | (Paused, Event::Resumed) => Running,
            (Running | Starting, Event::Paused) => Paused,
            (s, _) => s,
        }
    }
}

impl Counts {
    /// Count one concluded experiment.
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Keep => self.kept += 1,
            Status::Discard => self.discarded += 1,
            Status::Crash => self.crashed += 1,
            Status::InspectorReject => self.rejected += 1,
            Status::Baseline | Status::Confirmation => {}
        }
    }
}

/// Where the run's thread is now (not persisted: recovery needs only whether an
/// experiment was under way, see `Inflight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Idle,
    Setup,
    Baseline,
    Waiting,
    Proposing,
    Committing,
    Measuring,
    Guards,
    Deciding,
    Logging,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Idle => "idle",
            Step::Setup => "setup",
            Step::Baseline => "baseline",
            Step::Waiting => "waiting for a slot",
            Step::Proposing => "proposing",
            Step::Committing => "committing",
            Step::Measuring => "measuring",
            Step::Guards => "guards",
            Step::Deciding => "deciding",
            Step::Logging => "logging",
        }
    }
}

/// Requests from the user (and the daemon), read by the run's thread between steps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Control {
    pub stop: bool,
    pub stop_now: bool,
    pub pause: bool,
    /// The daemon is going down: interrupt, revert, leave the run resumable.
    pub shutdown: bool,
}

/// One request to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Finish the current experiment (`now`: kill and revert it), then stop.
    Stop {
        now: bool,
    },
    Pause,
    Resume,
    Shutdown,
}

impl Control {
    /// The controls a run comes back with after a restart: a stop or pause the user asked
    /// for before still holds.
    pub fn restored(state: RunState, pause: bool) -> Control {
        Control {
            stop: state == RunState::Stopping,
            pause: pause || state == RunState::Paused,
            ..Control::default()
        }
    }

    pub fn apply(&mut self, request: Request) {
        match request {
            Request::Stop { now } => {
                self.stop = true;
                self.stop_now |= now;
            }
            Request::Pause => self.pause = true,
            Request::Resume => self.pause = false,
            Request::Shutdown => self.shutdown = true,
        }
    }

    /// The command running now must be killed.
    pub fn interrupts(&self) -> bool {
        self.stop_now || self.shutdown
    }

    /// The loop must not start another experiment (a slot waiter gives up).
    pub fn holds(&self) -> bool {
        self.stop || self.stop_now || self.shutdown || self.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::*;

    #[test]
    fn a_stop_request_holds_until_the_run_ends() {
        let s = Running.after(Event::StopRequested);
        assert_eq!(s, Stopping);
        // The loop finishing an experiment, or resuming, never shows it running again.
        assert_eq!(s.after(Event::Resumed), Stopping);
        assert_eq!(s.after(Event::Paused), Stopping);
        assert_eq!(s.after(Event::BaselineDone), Stopping);
        assert_eq!(s.after(Event::Stopped), Stopped);
        assert_eq!(Starting.after(Event::StopRequested), Stopping);
        assert_eq!(Paused.after(Event::StopRequested), Stopping);
    }

    #[test]
    fn ended_runs_stay_ended() {
        for end in [Stopped, Finished, Failed] {
            for e in [
                Event::Resumed,
                Event::StopRequested,
                Event::Failed,
                Event::BaselineDone,
            ] {
                assert_eq!(end.after(e), end);
            }
        }
    }

    #[test]
    fn pause_and_resume() {
        assert_eq!(Running.after(Event::Paused), Paused);
        assert_eq!(Paused.after(Event::Resumed), Running);
        assert_eq!(Starting.after(Event::BaselineDone), Running);
        assert_eq!(Starting.after(Event::Resumed), Starting);
        assert_eq!(Running.after(Event::Finished), Finished);
        assert_eq!(Paused.after(Event::Failed), Failed);
    }

    #[test]
    fn controls_come_back_after_a_restart() {
        let c = Control::restored(Stopping, false);
        assert!(c.stop && !c.pause && !c.interrupts());
        assert!(Control::restored(Paused, false).pause);
        assert!(Control::restored(Running, true).pause);
        assert_eq!(Control::restored(Running, false), Control::default());
        let mut c = Control::default();
        c.apply(Request::Stop { now: true });
        assert!(c.interrupts() && c.holds());
        c = Control::default();
        c.apply(Request::Pause);
        assert!(c.holds() && !c.interrupts());
        c.apply(Request::Resume);
        assert!(!c.holds());
    }

    #[test]
    fn counts_tally_each_status() {
        let mut c = Counts::default();
        for s in [
            Status::Keep,
            Status::Discard,
            Status::Discard,
            Status::Crash,
            Status::InspectorReject,
            Status::Baseline,
        ] {
            c.add(s);
        }
        assert_eq!((c.kept, c.discarded, c.crashed, c.rejected), (1, 2, 1, 1));
    }
}
