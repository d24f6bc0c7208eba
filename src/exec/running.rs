//! What arctl runs on this machine right now, and freezing it: the registry behind
//! `measure = "exclusive"`. Every command [`super::run`] starts is registered with its
//! process group and the members of its tree (the watchdog's samples feed them); a timed
//! measurement freezes every other command of its daemon for the length of the run —
//! other runs' proposers, guards, setup and shared-mode measurements — with SIGSTOP, and
//! thaws them with SIGCONT after.
//!
//! Why freezing (measured on a 2-core machine with `scripts/measure-exclusive.py`, see the
//! README's isolation section): with one or two neighbours burning cores, a 0.15 s metric ran
//! up to +98% slow (robust cv up to 58%); pinning the metric to one core and everything else
//! to the other ranged from −0.5% to +148% (it only helps when that other core is otherwise
//! idle, and takes a core from everything else); stopping the neighbours gave the quiet
//! machine's numbers (within ±2.5%) at a cost of ~0.2-2 ms per freeze. The cgroup v1 freezer
//! gives the same numbers but needs root. Time spent frozen does not count toward
//! a command's timeout, and a wall-clock metric frozen by another run's measurement has the
//! frozen time taken out of its value.
//!
//! Scope: one registry per process, but a freeze only touches commands whose tag starts
//! with its scope (a daemon's tag root), so daemons sharing a process (tests) leave each
//! other alone. A command that starts while a freeze of its scope is on is stopped at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::procfs::{self, Ident};

/// One registered command.
struct Entry {
    tag: String,
    /// The leader's pid: also its process group id, reserved while it is registered (the
    /// leader is unregistered before it is reaped).
    leader: u32,
    /// The leader (the command's keeper) as pid and start time: what `started_by_arctl`
    /// looks for among a process's ancestors.
    keeper: Ident,
    /// Past its gate (its keeper closed what it inherited): only then may a freeze stop it.
    started: bool,
    /// Tree members as last sampled (escaped processes included).
    members: Vec<Ident>,
    /// Freezes holding it now, since when, and its frozen time so far.
    depth: u32,
    since: Option<Instant>,
    frozen: Duration,
    /// Processes a freeze stopped, to be continued at the thaw.
    stopped: Vec<Ident>,
}

impl Entry {
    fn frozen_for(&self, now: Instant) -> Duration {
        self.frozen + self.since.map_or(Duration::ZERO, |s| now.duration_since(s))
    }
}

/// An active freeze: who is exempt, within which scope, and the entries it holds.
struct Active {
    token: u64,
    scope: String,
    exempt: String,
    held: Vec<u64>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    entries: BTreeMap<u64, Entry>,
    freezes: Vec<Active>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    entries: BTreeMap::new(),
    freezes: Vec::new(),
});

/// Notified when a freeze ends (commands waiting to start look again).
static THAWED: Condvar = Condvar::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait while a freeze of `tag`'s scope is on (and `tag` is not the measurement itself): a
/// command due to start then waits at its gate, where its keeper has already closed what
/// it inherited from the daemon. (A keeper stopped before that would hold copies of other
/// commands' pipes, and their ends would wait for the thaw: a measurement for itself.)
pub fn wait_unfrozen(tag: &str) {
    let mut r = registry();
    while r
        .freezes
        .iter()
        .any(|f| tag.starts_with(&f.scope) && tag != f.exempt)
    {
        r = THAWED
            .wait_timeout(r, Duration::from_millis(100))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A command's place in the registry; unregisters when finished or dropped.
pub struct Registration {
    id: Option<u64>,
}

/// Register the command `tag` whose keeper (its leader and process group) was just forked
/// and waits at its gate: known from now on (a process it starts is arctl's), freezable
/// once [`Registration::started`].
pub fn register(tag: &str, keeper: Ident) -> Registration {
    let mut r = registry();
    let id = r.next;
    r.next += 1;
    r.entries.insert(
        id,
        Entry {
            tag: tag.to_string(),
            leader: keeper.0,
            keeper,
            started: false,
            members: vec![keeper],
            depth: 0,
            since: None,
            frozen: Duration::ZERO,
            stopped: Vec::new(),
        },
    );
    Registration { id: Some(id) }
}

/// The pids of the running commands whose tag starts with `prefix`, as last sampled (the
/// keeper first), by tag.
pub fn pids(prefix: &str) -> Vec<(String, Vec<u32>)> {
    let r = registry();
    let mut out: Vec<(String, Vec<u32>)> = r
        .entries
        .values()
        .filter(|e| e.tag.starts_with(prefix))
        .map(|e| {
            let mut pids = vec![e.leader];
            pids.extend(e.members.iter().map(|m| m.0).filter(|p| *p != e.leader));
            (e.tag.clone(), pids)
        })
        .collect();
    out.sort();
    out
}

/// The keepers of every command running now.
pub fn keepers() -> Vec<Ident> {
    registry().entries.values().map(|e| e.keeper).collect()
}

impl Registration {
    /// The tree as the watchdog sampled it.
    pub fn update(&self, members: &[Ident]) {
        if let Some(id) = self.id {
            if let Some(e) = registry().entries.get_mut(&id) {
                e.members = members.to_vec();
            }
        }
    }

    /// The command starts now (its gate opened): it may be frozen from now on, and at once
    /// when a freeze of its scope began while it waited.
    pub fn started(&self) {
        let Some(id) = self.id else {
            return;
        };
        let mut guard = registry();
        let r = &mut *guard;
        let Some(e) = r.entries.get_mut(&id) else {
            return;
        };
        e.started = true;
        for f in r.freezes.iter_mut() {
            if e.tag.starts_with(&f.scope) && e.tag != f.exempt {
                f.held.push(id);
                e.depth += 1;
            }
        }
        if e.depth > 0 {
            e.since = Some(Instant::now());
            procfs::signal_group(e.leader, libc::SIGSTOP);
            e.stopped.push(e.keeper);
        }
    }

    /// Time this command has spent frozen so far.
    pub fn frozen_for(&self) -> Duration {
        let Some(id) = self.id else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        registry()
            .entries
            .get(&id)
            .map_or(Duration::ZERO, |e| e.frozen_for(now))
    }

    /// Unregister (before the leader is reaped: its group id must not be signalled after);
    /// returns the time it spent frozen.
    pub fn finish(&mut self) -> Duration {
        let Some(id) = self.id.take() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        registry()
            .entries
            .remove(&id)
            .map_or(Duration::ZERO, |e| e.frozen_for(now))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Commands frozen while it lives (see [`freeze_others`]); dropping it thaws them.
pub struct Freeze {
    token: u64,
    /// Processes it stopped.
    pub stopped: usize,
}

/// Stop every registered command whose tag starts with `scope`, except the one tagged
/// `exempt` (the measurement about to run), and every command of the scope that starts
/// before the returned guard is dropped.
pub fn freeze_others(scope: &str, exempt: &str) -> Freeze {
    let mut r = registry();
    let token = r.next;
    r.next += 1;
    let now = Instant::now();
    let mut held = Vec::new();
    let mut stopped = 0;
    // Under the lock: an entry cannot be unregistered (and its leader reaped) meanwhile.
    for (&id, e) in r.entries.iter_mut() {
        if !e.started || !e.tag.starts_with(scope) || e.tag == exempt {
            continue;
        }
        if e.depth == 0 {
            e.since = Some(now);
        }
        e.depth += 1;
        held.push(id);
        let ids = stop_tree(e.keeper, &e.members);
        stopped += ids.len();
        e.stopped.extend(ids);
    }
    r.freezes.push(Active {
        token,
        scope: scope.to_string(),
        exempt: exempt.to_string(),
        held,
    });
    Freeze { token, stopped }
}

/// SIGSTOP a command's group, its sampled members, and their descendants born since the
/// last sample: read from the keeper down while it lives (nothing leaves its tree), else
/// found by parent pid in a scan of /proc. A stopped process forks no more, so a few
/// rounds suffice. Returns what was stopped.
fn stop_tree(keeper: Ident, members: &[Ident]) -> Vec<Ident> {
    let leader = keeper.0;
    procfs::signal_group(leader, libc::SIGSTOP);
    let mut done: HashSet<Ident> = HashSet::new();
    for &m in members {
        if procfs::signal_ident(m, libc::SIGSTOP) {
            done.insert(m);
        }
    }
    for _ in 0..3 {
        let new: Vec<Ident> = match procfs::keeper_tree(keeper) {
            Some(tree) => tree
                .iter()
                .filter(|s| !s.is_dead() && !done.contains(&s.ident()))
                .map(|s| s.ident())
                .collect(),
            None => below_by_scan(leader, &done),
        };
        if new.is_empty() {
            break;
        }
        for id in new {
            if procfs::signal_ident(id, libc::SIGSTOP) {
                done.insert(id);
            }
        }
    }
    done.into_iter().collect()
}

/// The keeper is gone: its group and the descendants of what is stopped, by parent pid in
/// a scan of /proc (not stopped yet).
fn below_by_scan(leader: u32, done: &HashSet<Ident>) -> Vec<Ident> {
    let stats = procfs::all_stats();
    let mut pids: HashSet<u32> = done.iter().map(|d| d.0).collect();
    pids.insert(leader);
    let mut out: Vec<Ident> = Vec::new();
    loop {
        let new: Vec<Ident> = stats
            .iter()
            .filter(|s| !s.is_dead() && !done.contains(&s.ident()) && !out.contains(&s.ident()))
            .filter(|s| pids.contains(&s.ppid) || s.pgrp == leader)
            .map(|s| s.ident())
            .collect();
        if new.is_empty() {
            return out;
        }
        pids.extend(new.iter().map(|id| id.0));
        out.extend(new);
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        let mut r = registry();
        let Some(at) = r.freezes.iter().position(|f| f.token == self.token) else {
            return;
        };
        let held = r.freezes.remove(at).held;
        let now = Instant::now();
        for id in held {
            let Some(e) = r.entries.get_mut(&id) else {
                continue; // ended while frozen (killed): nothing of it to continue
            };
            e.depth = e.depth.saturating_sub(1);
            if e.depth > 0 {
                continue;
            }
            if let Some(s) = e.since.take() {
                e.frozen += now.duration_since(s);
            }
            for m in e.stopped.drain(..) {
                procfs::signal_ident(m, libc::SIGCONT);
            }
            procfs::signal_group(e.leader, libc::SIGCONT);
        }
        THAWED.notify_all();
    }
}

/// Commands registered now whose tag starts with `scope` (for tests and `status`).
pub fn registered(scope: &str) -> Vec<String> {
    registry()
        .entries
        .values()
        .filter(|e| e.tag.starts_with(scope))
        .map(|e| e.tag.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{run, Cancel, CommandSpec};
    use std::time::Duration;

    fn state(pid: u32) -> Option<u8> {
        procfs::read_stat(pid).map(|s| s.state)
    }

    #[test]
    fn a_freeze_stops_the_others_and_their_timeouts_wait() {
        let dir = tempfile::tempdir().unwrap();
        let scope = format!("arctl-test-freeze-{}/", std::process::id());
        // A busy neighbour (~0.5 s of CPU) with a 3 s timeout, frozen for 4 s: it must not
        // time out, and it must not have run meanwhile.
        let mut spec = CommandSpec::new(
            "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done",
            dir.path(),
            dir.path().join("out"),
            dir.path().join("err"),
            format!("{scope}other"),
        );
        spec.timeout = Some(Duration::from_secs(3));
        let h = std::thread::spawn(move || run(&spec, &Cancel::new()).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while registered(&scope).is_empty() {
            assert!(Instant::now() < deadline, "never registered");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(150)); // one sample of the tree
        let leader = registry()
            .entries
            .values()
            .find(|e| e.tag.starts_with(&scope))
            .map(|e| e.leader)
            .unwrap();
        let f = freeze_others(&scope, &format!("{scope}measure"));
        assert!(f.stopped >= 1, "stopped {}", f.stopped);
        let cpu = |pid: u32| procfs::read_stat(pid).map(|s| s.cpu_ticks);
        let cpu_at_freeze = cpu(leader);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(state(leader), Some(b'T'));
        // Another scope's freeze does not touch it.
        drop(freeze_others("arctl-elsewhere/", ""));
        assert_eq!(state(leader), Some(b'T'));
        // A command of the scope that starts now is stopped at once, and continued after.
        let mut late = CommandSpec::new(
            "echo started",
            dir.path(),
            dir.path().join("late.out"),
            dir.path().join("late.err"),
            format!("{scope}late"),
        );
        late.timeout = Some(Duration::from_secs(2));
        let l = std::thread::spawn(move || run(&late, &Cancel::new()).unwrap());
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(cpu(leader), cpu_at_freeze, "a frozen command ran");
        assert!(!l.is_finished(), "a command started during the freeze ran");
        drop(f);
        std::thread::sleep(Duration::from_millis(50));
        assert_ne!(state(leader), Some(b'T'));
        let out = h.join().unwrap();
        assert!(out.exit.success(), "{:?}", out.exit);
        let frozen = out.frozen_ms.unwrap_or(0);
        assert!((3900..6000).contains(&frozen), "frozen {frozen} ms");
        assert!(out.wall_ms > 3000, "wall {} ms", out.wall_ms);
        let late = l.join().unwrap();
        assert!(late.exit.success(), "{:?}", late.exit);
        // It was held before it started: no frozen time of its own, and it ran after.
        assert!(late.started_at_ms >= out.started_at_ms + 3900, "{late:?}");
        assert!(registered(&scope).is_empty());
    }
}
