//! Allocations: getting one from salloc (the queue wait, cancel while queued, retries
//! while the controller is unreachable), giving it back, and the groups of commands that
//! share one (a paired round: one queue wait, one node). See the module documentation for
//! how an allocation is held.

use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tools::{cancel_matching, job_name, minutes, scancel};
use super::Slurm;
use crate::exec::{epoch_ms, Cancel, CommandSpec, Executor, Outcome, TAG_VAR};

/// Added to the command timeouts for an allocation's `--time` (arctl enforces the timeouts
/// itself; this only bounds what the cluster runs if arctl is gone).
const TIME_MARGIN: Duration = Duration::from_secs(120);
/// How long salloc may take to give an allocation back before it is killed and the job
/// cancelled.
const RELEASE_WAIT: Duration = Duration::from_secs(15);
/// Attempts at an allocation while the controller cannot be reached.
const TRANSIENT_RETRIES: u32 = 5;
/// The allocation's local command prints this, the job id and the node when it starts.
const GRANTED: &str = "arctl-allocation";

/// An allocation held by this process (see the module documentation).
pub(super) struct Allocation {
    pub(super) job_id: u64,
    pub(super) node: String,
    pub(super) queue_ms: u64,
    /// Commands run in it so far.
    pub(super) steps: u32,
    salloc: Child,
    /// Closing it ends the allocation.
    feed: Option<ChildStdin>,
    readers: Vec<JoinHandle<()>>,
}

/// A group of the calling thread (see [`Executor::begin_group`]).
pub(super) struct GroupState {
    /// How many commands to expect (sizes the allocation's time limit).
    pub(super) commands: u32,
    pub(super) alloc: Option<Allocation>,
    /// The node of the group's first allocation: a later one is pinned to it.
    pub(super) node: Option<String>,
}

/// What salloc's output says.
enum Event {
    Pending(u64),
    Granted(u64, String),
}

/// How an attempt at an allocation ended.
enum Allocated {
    Got(Allocation),
    /// Cancelled while waiting in the queue, after this long.
    Cancelled {
        waited_ms: u64,
        job: Option<u64>,
    },
    Failed(String),
}

impl Slurm {
    /// An allocation for the next command of the calling thread: its group's, if it holds
    /// one, else a new one (pinned to the group's node, if it had one). Err(outcome): the
    /// command was cancelled while queued. The bool: the thread is in a group.
    pub(super) fn acquire(
        &self,
        spec: &CommandSpec,
        cancel: &Cancel,
    ) -> io::Result<Result<(Allocation, bool), Outcome>> {
        let me = std::thread::current().id();
        let (grouped, held, pin, commands) = {
            let mut inner = self.lock();
            match inner.groups.get_mut(&me) {
                Some(g) => (true, g.alloc.take(), g.node.clone(), g.commands),
                None => (false, None, None, 1),
            }
        };
        if let Some(a) = held {
            return Ok(Ok((a, grouped)));
        }
        let limit = spec.timeout.map(|t| t * commands.max(1) + TIME_MARGIN);
        match self.allocate(spec, limit, pin.as_deref(), cancel)? {
            Allocated::Got(a) => Ok(Ok((a, grouped))),
            Allocated::Cancelled { waited_ms, job } => Ok(Err(cancelled_in_queue(waited_ms, job))),
            Allocated::Failed(msg) => Err(io::Error::other(format!(
                "Slurm refused the job ({}): {msg}",
                self.describe()
            ))),
        }
    }

    /// After a command: a group keeps its allocation for the next one if `keep`; any other
    /// is given back (cancelled at once unless `clean`). The group remembers the node.
    pub(super) fn hand_back(&self, alloc: Allocation, keep: bool, clean: bool) {
        let me = std::thread::current().id();
        let back = {
            let mut inner = self.lock();
            match inner.groups.get_mut(&me) {
                Some(g) => {
                    g.node = Some(alloc.node.clone());
                    if keep {
                        g.alloc = Some(alloc);
                        None
                    } else {
                        Some(alloc)
                    }
                }
                None => Some(alloc),
            }
        };
        if let Some(a) = back {
            self.release(a, !clean);
        }
    }

    /// Get an allocation, waiting in the queue as long as it takes (or until cancelled).
    fn allocate(
        &self,
        spec: &CommandSpec,
        limit: Option<Duration>,
        pin: Option<&str>,
        cancel: &Cancel,
    ) -> io::Result<Allocated> {
        let name = job_name(&spec.tag);
        let mut args = vec![
            "--nodes=1".to_string(),
            "--ntasks=1".into(),
            format!("--job-name={name}"),
        ];
        args.extend(self.resource_args(spec.limits.memory));
        // The backstop never asks more than the partition allows (arctl's own timeout holds).
        if let Some(l) = limit {
            let l = self.max_time().map_or(l, |max| l.min(max));
            args.push(format!("--time={}", minutes(l)));
        }
        args.extend(self.site_args());
        if let Some(n) = pin {
            args.push(format!("--nodelist={n}"));
        }
        args.extend([
            "--".into(),
            "sh".into(),
            "-c".into(),
            format!("echo \"{GRANTED} $SLURM_JOB_ID $SLURM_JOB_NODELIST\"; exec cat >/dev/null"),
        ]);
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match self.try_allocate(&args, &name, &spec.tag, cancel, started)? {
                Allocated::Failed(msg) if transient(&msg) && attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::warn!(
                        "salloc failed ({msg}); attempt {} of {TRANSIENT_RETRIES} in a moment",
                        attempt + 1
                    );
                    let until = Instant::now() + Duration::from_secs(2u64.pow(attempt));
                    while Instant::now() < until {
                        if cancel.is_cancelled() {
                            return Ok(Allocated::Cancelled {
                                waited_ms: started.elapsed().as_millis() as u64,
                                job: None,
                            });
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                other => return Ok(other),
            }
        }
    }

    /// One salloc: wait for its job to be granted, or for salloc to give up, or for the
    /// cancel flag (then the request is withdrawn).
    fn try_allocate(
        &self,
        args: &[String],
        name: &str,
        tag: &str,
        cancel: &Cancel,
        started: Instant,
    ) -> io::Result<Allocated> {
        let s = Salloc::start(args, tag)?;
        let mut job: Option<u64> = None;
        loop {
            match s.events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Pending(id)) => {
                    job = Some(id);
                    self.track(id, name, "queued", None);
                }
                Ok(Event::Granted(id, node)) => {
                    let queue_ms = started.elapsed().as_millis() as u64;
                    self.track(id, name, "running", Some(node.clone()));
                    return Ok(Allocated::Got(Allocation {
                        job_id: id,
                        node,
                        queue_ms,
                        steps: 0,
                        salloc: s.child,
                        feed: s.feed,
                        readers: s.readers,
                    }));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if cancel.is_cancelled() {
                        return Ok(self.withdraw(s, job, name, started));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(self.refused(s, job)),
            }
        }
    }

    /// Cancelled while queued. SIGTERM: salloc withdraws the request; the scancel covers a
    /// salloc that is past that point.
    fn withdraw(&self, mut s: Salloc, job: Option<u64>, name: &str, started: Instant) -> Allocated {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(s.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        drop(s.feed.take());
        finish_child(&mut s.child, Duration::from_secs(5));
        let ids: Vec<(u64, String)> = job.map(|id| (id, name.to_string())).into_iter().collect();
        if let Err(e) = cancel_matching(name, &ids) {
            tracing::warn!("cancelling the queued job {name}: {e}");
        }
        if let Some(id) = job {
            self.untrack(id);
        }
        for r in s.readers {
            let _ = r.join();
        }
        Allocated::Cancelled {
            waited_ms: started.elapsed().as_millis() as u64,
            job,
        }
    }

    /// salloc ended without an allocation: what it said.
    fn refused(&self, mut s: Salloc, job: Option<u64>) -> Allocated {
        drop(s.feed.take());
        finish_child(&mut s.child, Duration::from_secs(5));
        for r in s.readers {
            let _ = r.join();
        }
        if let Some(id) = job {
            let _ = scancel(&[id]);
            self.untrack(id);
        }
        let msg = s
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .trim()
            .to_string();
        Allocated::Failed(if msg.is_empty() {
            "salloc ended without an allocation".into()
        } else {
            msg
        })
    }

    /// Give an allocation back; `force`: cancel it at once (a step may still be running).
    pub(super) fn release(&self, mut a: Allocation, force: bool) {
        if force {
            if let Err(e) = scancel(&[a.job_id]) {
                tracing::warn!("cancelling job {}: {e}", a.job_id);
            }
        }
        drop(a.feed.take());
        let exited = finish_child(&mut a.salloc, RELEASE_WAIT);
        let clean = exited
            && a.salloc
                .try_wait()
                .ok()
                .flatten()
                .is_some_and(|s| s.success());
        if !clean && !force {
            // salloc did not give it back cleanly: make sure the job is gone.
            if let Err(e) = scancel(&[a.job_id]) {
                tracing::warn!("cancelling job {}: {e}", a.job_id);
            }
        }
        for r in a.readers.drain(..) {
            let _ = r.join();
        }
        self.untrack(a.job_id);
    }
}

/// A running salloc and the threads that turn its output into [`Event`]s.
struct Salloc {
    child: Child,
    /// Closing it ends the allocation (the allocation's command is `cat` reading it).
    feed: Option<ChildStdin>,
    readers: Vec<JoinHandle<()>>,
    events: Receiver<Event>,
    /// All salloc wrote to stderr: the reason, when it ends without an allocation.
    log: Arc<Mutex<String>>,
}

impl Salloc {
    fn start(args: &[String], tag: &str) -> io::Result<Salloc> {
        let mut cmd = Command::new("salloc");
        cmd.args(args)
            // Found by a restarted daemon (prefix), but not swept with the step (exact tag).
            .env(TAG_VAR, format!("{tag}#salloc"))
            .env_remove("SLURM_JOB_ID")
            .env_remove("SLURM_JOBID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting salloc: {e}")))?;
        let (tx, events) = mpsc::channel::<Event>();
        let log = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some((id, nodes)) = parse_granted(&line) {
                        let _ = tx.send(Event::Granted(id, nodes));
                    }
                }
            }));
        }
        if let Some(err) = child.stderr.take() {
            let (tx, log) = (tx.clone(), log.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.contains("Pending job allocation") {
                        if let Some(id) = parse_salloc_job(&line) {
                            let _ = tx.send(Event::Pending(id));
                        }
                    }
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            }));
        }
        drop(tx);
        let feed = child.stdin.take();
        Ok(Salloc {
            child,
            feed,
            readers,
            events,
            log,
        })
    }
}

/// What a queued job costs the command that waited for it: nothing ran, the wait is kept.
fn cancelled_in_queue(waited_ms: u64, job: Option<u64>) -> Outcome {
    Outcome {
        queue_ms: Some(waited_ms),
        job_id: job.map(|j| j.to_string()),
        ..Outcome::cancelled_before_start(epoch_ms())
    }
}

/// Wait for a child to exit; SIGKILL it after `wait`. True when it exited by itself.
fn finish_child(child: &mut Child, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut nap = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// `salloc: Pending job allocation 123` / `salloc: Granted job allocation 123`.
fn parse_salloc_job(line: &str) -> Option<u64> {
    let rest = line.split("job allocation ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `<marker> <job id> <node list>` from the allocation's command.
fn parse_granted(line: &str) -> Option<(u64, String)> {
    let mut it = line.split_whitespace();
    if it.next()? != GRANTED {
        return None;
    }
    let id = it.next()?.parse().ok()?;
    Some((id, it.next().unwrap_or("").to_string()))
}

/// Did salloc fail for a reason worth another attempt?
fn transient(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "unable to contact slurm controller",
        "socket timed out",
        "connection refused",
        "connection timed out",
        "temporarily unavailable",
    ]
    .iter()
    .any(|p| m.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_parses_salloc_and_marker_lines() {
        assert_eq!(
            parse_salloc_job("salloc: Pending job allocation 8"),
            Some(8)
        );
        assert_eq!(
            parse_salloc_job("salloc: Granted job allocation 1234"),
            Some(1234)
        );
        assert_eq!(
            parse_salloc_job("salloc: job 8 queued and waiting for resources"),
            None
        );
        assert_eq!(
            parse_granted("arctl-allocation 12 node-a1"),
            Some((12, "node-a1".into()))
        );
        assert_eq!(parse_granted("something else"), None);
        assert!(transient("salloc: error: Job submit/allocate failed: Unable to contact slurm controller (connect failure)"));
        assert!(!transient(
            "salloc: error: invalid partition specified: nope"
        ));
    }
}
