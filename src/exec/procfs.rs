//! Reading `/proc`: per-process stats, `ARCTL_TAG` in environments, signalling processes
//! by identity (pid + start time, through a pidfd where the kernel has them) so a recycled
//! pid is never hit. A command's tree is read from its keeper down
//! (`/proc/<pid>/task/<tid>/children`): the keeper is a PID namespace's init or a child
//! subreaper, so while it lives every process below it stays below it, and the watchdog
//! reads a few processes, not the whole machine's. Only when a keeper died early (killed
//! by its own command) is all of `/proc` scanned for what carries the command's tag.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that marks every process a command started.
pub const TAG_VAR: &str = "ARCTL_TAG";

/// A process identity that survives pid reuse: (pid, starttime in clock ticks since boot).
pub(crate) type Ident = (u32, u64);

/// The fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone)]
pub(crate) struct ProcStat {
    pub pid: u32,
    pub state: u8,
    pub ppid: u32,
    pub pgrp: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub cpu_ticks: u64,
    pub starttime: u64,
    pub rss_pages: u64,
    /// Threads in the process (each has its own list of children).
    pub threads: u32,
}

impl ProcStat {
    pub fn ident(&self) -> Ident {
        (self.pid, self.starttime)
    }
    /// Zombie or dead: no longer running, holds no memory, cannot be signalled usefully.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

pub(crate) fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as u64
        } else {
            100
        }
    })
}

pub(crate) fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as u64
        } else {
            4096
        }
    })
}

fn parse_stat(pid: u32, buf: &[u8]) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may itself contain ')' and spaces;
    // everything after the last ')' is space separated, starting with field 3 (state).
    let close = buf.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&buf[close + 1..]).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |field: usize| -> Option<u64> { fields.get(field - 3)?.parse().ok() };
    let state = *fields.first()?.as_bytes().first()?;
    Some(ProcStat {
        pid,
        state,
        ppid: num(4)? as u32,
        pgrp: num(5)? as u32,
        cpu_ticks: num(14)? + num(15)? + num(16)? + num(17)?,
        starttime: num(22)?,
        rss_pages: num(24)?,
        threads: num(20)? as u32,
    })
}

pub(crate) fn read_stat(pid: u32) -> Option<ProcStat> {
    let buf = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &buf)
}

/// `/proc/<pid>/stat` field 22 (starttime, clock ticks since boot), or None if there is no
/// such process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    read_stat(pid).map(|s| s.starttime)
}

/// All pids listed in /proc.
pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Stats of every process visible in /proc.
pub(crate) fn all_stats() -> Vec<ProcStat> {
    all_pids().into_iter().filter_map(read_stat).collect()
}

/// The children of a process, over all its threads (a child belongs to the thread that
/// forked it).
fn children_of(s: &ProcStat) -> Vec<u32> {
    let read = |tid: &str| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{}/task/{tid}/children", s.pid))
            .map(|t| {
                t.split_ascii_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    if s.threads <= 1 {
        return read(&s.pid.to_string());
    }
    let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", s.pid)) else {
        return Vec::new();
    };
    dir.filter_map(|e| Some(read(e.ok()?.file_name().to_str()?)))
        .flatten()
        .collect()
}

/// `root` and every process below it by parent, each read once; a pid recycled under the
/// walk (its parent is no longer the one that listed it) is left out. Empty when `root`
/// is gone.
pub(crate) fn tree_stats(root: u32) -> Vec<ProcStat> {
    let me = self_pid();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root, None)];
    while let Some((pid, parent)) = stack.pop() {
        if pid == me || pid <= 1 || !seen.insert(pid) {
            continue;
        }
        let Some(s) = read_stat(pid) else { continue };
        if parent.is_some_and(|p| s.ppid != p) {
            continue;
        }
        stack.extend(children_of(&s).into_iter().map(|c| (c, Some(pid))));
        out.push(s);
    }
    out
}

/// The tree below the keeper `keeper` (itself included) while the keeper lives and is not
/// a zombie: nothing below it can leave it then. None: the keeper is gone, what it held may
/// be anywhere.
pub(crate) fn keeper_tree(keeper: Ident) -> Option<Vec<ProcStat>> {
    let tree = tree_stats(keeper.0);
    let root = tree.first()?;
    (root.pid == keeper.0 && root.starttime == keeper.1 && !root.is_dead()).then_some(tree)
}

/// The value of `ARCTL_TAG` in the process's initial environment, if any.
pub(crate) fn read_tag(pid: u32) -> Option<Vec<u8>> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = TAG_VAR.as_bytes();
    env.split(|&b| b == 0)
        .find(|kv| kv.len() > key.len() && kv.starts_with(key) && kv[key.len()] == b'=')
        .map(|kv| kv[key.len() + 1..].to_vec())
}

/// How a tag is compared.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TagMatch<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

impl TagMatch<'_> {
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            TagMatch::Exact(t) => value == t.as_bytes(),
            TagMatch::Prefix(p) => value.starts_with(p.as_bytes()),
        }
    }
}

fn self_pid() -> u32 {
    std::process::id()
}

/// Live (non-zombie) processes whose tag matches, never including the calling process.
pub(crate) fn find_tagged(m: TagMatch<'_>) -> Vec<ProcStat> {
    let me = self_pid();
    all_stats()
        .into_iter()
        .filter(|s| s.pid != me && s.pid != 1 && !s.is_dead())
        .filter(|s| read_tag(s.pid).is_some_and(|v| m.matches(&v)))
        .collect()
}

/// Is the process with this identity still alive (exists, same start time, not a zombie)?
pub(crate) fn alive(id: Ident) -> bool {
    read_stat(id.0).is_some_and(|s| s.starttime == id.1 && !s.is_dead())
}

/// Send `sig` to the process with identity `id`. Returns true if a signal was delivered.
/// Uses a pidfd (which pins the process) and checks the start time after opening it, so a
/// recycled pid is never signalled. Never signals the calling process or pid 1.
pub(crate) fn signal_ident(id: Ident, sig: libc::c_int) -> bool {
    let (pid, start) = id;
    if pid == self_pid() || pid <= 1 {
        return false;
    }
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd >= 0 {
        let fd = fd as libc::c_int;
        let ok = alive(id)
            // SAFETY: fd is a pidfd we own; a null siginfo is allowed.
            && unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd,
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0 as libc::c_uint,
                )
            } == 0;
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
        ok
    } else {
        // No pidfd support (old kernel or seccomp): check, then kill; a small race remains.
        if !alive((pid, start)) {
            return false;
        }
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
    }
}

/// Send `sig` to a process group. The caller guarantees the group id is still reserved
/// (its leader is alive or an unreaped zombie of ours).
pub(crate) fn signal_group(pgid: u32, sig: libc::c_int) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
    }
}

/// Poll until none of `ids` is alive or `deadline` passes. Returns true if all are gone.
pub(crate) fn wait_gone(ids: &[Ident], deadline: Instant) -> bool {
    loop {
        if !ids.iter().any(|&id| alive(id)) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Bounded repetition of "find matching processes, SIGKILL them, wait for them to die",
/// so processes forked while we were killing are caught too. `extra` adds processes to
/// kill that are not found by `find` (e.g. members of a process group). Returns the set of
/// identities signalled.
pub(crate) fn kill_rounds(mut find: impl FnMut() -> Vec<Ident>) -> HashSet<Ident> {
    let mut signalled = HashSet::new();
    let overall = Instant::now() + Duration::from_secs(10);
    for _ in 0..50 {
        let found = find();
        if found.is_empty() {
            break;
        }
        for &id in &found {
            if signal_ident(id, libc::SIGKILL) {
                signalled.insert(id);
            }
        }
        let round_deadline = (Instant::now() + Duration::from_secs(1)).min(overall);
        wait_gone(&found, round_deadline);
        if Instant::now() >= overall {
            tracing::warn!("processes survived SIGKILL for 10s (uninterruptible sleep?)");
            break;
        }
    }
    signalled
}

/// SIGTERM every matching process, wait up to `grace` for them to exit, then SIGKILL what
/// is left (repeating until nothing matches). Returns how many processes were signalled.
pub(crate) fn kill_matching(m: TagMatch<'_>, grace: Duration) -> usize {
    let first: Vec<Ident> = find_tagged(m).iter().map(ProcStat::ident).collect();
    if first.is_empty() {
        return 0;
    }
    let mut signalled: HashSet<Ident> = HashSet::new();
    if !grace.is_zero() {
        for &id in &first {
            if signal_ident(id, libc::SIGTERM) {
                signalled.insert(id);
            }
        }
        wait_gone(&first, Instant::now() + grace);
    }
    signalled.extend(kill_rounds(|| {
        find_tagged(m).iter().map(ProcStat::ident).collect()
    }));
    signalled.len()
}

/// The live process tree of one command: its process group, the descendants of its leader
/// (by parent pid; the leader is the command's keeper, a subreaper or PID namespace init,
/// so orphans stay below it), and processes carrying its exact tag that escaped both (the
/// keeper killed), plus optionally the members of its cgroup.
pub(crate) struct TreeTracker {
    leader: u32,
    tag: String,
    /// Tagged processes found by the last environ scan (environ is only scanned
    /// periodically; in between these identities are followed by pid).
    known_tagged: HashSet<Ident>,
    last_environ_scan: Option<Instant>,
    /// The leader's start time: a process started before it cannot be one of its
    /// descendants, so its environment is not read (most of the machine's processes).
    min_start: Option<u64>,
    /// Look for escaped processes by their tag (not needed when the leader is the init of
    /// a PID namespace: nothing can leave its tree).
    scan_tags: bool,
}

/// One sample of a command's tree.
pub(crate) struct TreeSample {
    pub members: Vec<ProcStat>,
    pub rss_bytes: u64,
    pub cpu: Duration,
}

/// How often the (more expensive) environ scan for escaped tagged processes runs.
const ENVIRON_SCAN_PERIOD: Duration = Duration::from_millis(500);

impl TreeTracker {
    /// The tree below `leader` (the command's keeper).
    pub fn new(leader: u32, tag: &str, scan_tags: bool) -> Self {
        TreeTracker {
            leader,
            tag: tag.to_string(),
            known_tagged: HashSet::new(),
            last_environ_scan: None,
            min_start: process_start_time(leader),
            scan_tags,
        }
    }

    /// Sample the tree. `extra` pids (cgroup members) are added with what is below them.
    /// While the keeper lives (or in a PID namespace) only the tree is read; a keeper gone
    /// early leaves a scan of all of /proc, `force_environ` forcing its environment part.
    pub fn sample(&mut self, force_environ: bool, extra: &[u32]) -> TreeSample {
        let keeper = self.min_start.map(|t| (self.leader, t));
        let walked = match keeper.and_then(keeper_tree) {
            Some(tree) => Some(tree),
            None if !self.scan_tags => Some(tree_stats(self.leader)),
            None => None,
        };
        let members = match walked {
            Some(tree) => self.with_extra(tree, extra),
            None => self.scan(force_environ, extra),
        };
        // The leader is the keeper, a fork of the daemon: its resident pages are the
        // daemon's (shared copy-on-write), not the command's.
        let rss_bytes = members
            .iter()
            .filter(|s| !s.is_dead() && s.pid != self.leader)
            .map(|s| s.rss_pages * page_size())
            .sum();
        let ticks: u64 = members.iter().map(|s| s.cpu_ticks).sum();
        let cpu = Duration::from_millis(ticks * 1000 / clock_ticks_per_sec());
        TreeSample {
            members,
            rss_bytes,
            cpu,
        }
    }

    /// The walked tree plus the `extra` pids and the tagged escapees known from an earlier
    /// scan, each with what is below it.
    fn with_extra(&mut self, mut tree: Vec<ProcStat>, extra: &[u32]) -> Vec<ProcStat> {
        let mut have: HashSet<u32> = tree.iter().map(|s| s.pid).collect();
        self.known_tagged.retain(|&id| alive(id));
        let more: Vec<u32> = extra
            .iter()
            .copied()
            .chain(self.known_tagged.iter().map(|id| id.0))
            .collect();
        for pid in more {
            if have.contains(&pid) {
                continue;
            }
            for s in tree_stats(pid) {
                if have.insert(s.pid) {
                    tree.push(s);
                }
            }
        }
        tree
    }

    /// The keeper is gone: its group, what carries its exact tag (the environment is read
    /// every [`ENVIRON_SCAN_PERIOD`]; in between the tagged ones found are followed by pid)
    /// and what is below those, from a scan of all of /proc.
    fn scan(&mut self, force_environ: bool, extra: &[u32]) -> Vec<ProcStat> {
        let me = self_pid();
        let stats = all_stats();
        let now = Instant::now();
        let scan_environ = force_environ
            || self
                .last_environ_scan
                .is_none_or(|t| now.duration_since(t) >= ENVIRON_SCAN_PERIOD);
        let mut in_tree: HashSet<u32> = HashSet::new();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        let extra: HashSet<u32> = extra.iter().copied().collect();
        let mut new_known = HashSet::new();
        for s in &stats {
            children.entry(s.ppid).or_default().push(s.pid);
            if s.pid == me || s.pid <= 1 {
                continue;
            }
            if s.pid == self.leader || s.pgrp == self.leader || extra.contains(&s.pid) {
                in_tree.insert(s.pid);
            } else if scan_environ {
                if !s.is_dead()
                    && self.min_start.is_none_or(|m| s.starttime >= m)
                    && read_tag(s.pid).is_some_and(|v| TagMatch::Exact(&self.tag).matches(&v))
                {
                    in_tree.insert(s.pid);
                    new_known.insert(s.ident());
                }
            } else if self.known_tagged.contains(&s.ident()) {
                in_tree.insert(s.pid);
                new_known.insert(s.ident());
            }
        }
        if scan_environ {
            self.last_environ_scan = Some(now);
        }
        self.known_tagged = new_known;
        // Descendants by parent pid (processes that changed group but kept their parent,
        // or cleared their environment).
        let mut stack: Vec<u32> = in_tree.iter().copied().collect();
        while let Some(p) = stack.pop() {
            if let Some(kids) = children.get(&p) {
                for &k in kids {
                    if k != me && k > 1 && in_tree.insert(k) {
                        stack.push(k);
                    }
                }
            }
        }
        stats
            .into_iter()
            .filter(|s| in_tree.contains(&s.pid))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 555 1000000 25 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(1234, line).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.cpu_ticks, 13);
        assert_eq!(s.starttime, 555);
        assert_eq!(s.rss_pages, 25);
        assert_eq!(s.threads, 1);
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id();
        let a = process_start_time(me).unwrap();
        assert_eq!(Some(a), process_start_time(me));
        assert!(read_stat(me).is_some_and(|s| !s.is_dead()));
    }

    #[test]
    fn a_tree_is_read_from_its_root_down() {
        // sh → sh → sleep, the middle one with a second thread-free child: all found, and
        // nothing else (the test process's other children are not below `sh`).
        let mut c = std::process::Command::new("sh")
            .args(["-c", "sh -c 'sleep 30 & sleep 30; :' & wait"])
            .spawn()
            .unwrap();
        let root = c.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tree = tree_stats(root);
        while tree.len() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            tree = tree_stats(root);
        }
        let alive_root = keeper_tree(tree[0].ident()).map(|t| t.len());
        let _ = c.kill();
        for s in &tree {
            signal_ident(s.ident(), libc::SIGKILL);
        }
        let _ = c.wait();
        assert_eq!(tree.len(), 4, "sh, sh, sleep, sleep: {tree:?}");
        assert_eq!(alive_root, Some(4));
        assert_eq!(tree[0].pid, root);
        assert!(tree[1..]
            .iter()
            .all(|s| s.pid != root && s.starttime >= tree[0].starttime));
        assert!(
            keeper_tree((root, tree[0].starttime)).is_none(),
            "a dead keeper"
        );
    }

    #[test]
    fn tag_matching() {
        assert!(TagMatch::Exact("a-1").matches(b"a-1"));
        assert!(!TagMatch::Exact("a-1").matches(b"a-10"));
        assert!(TagMatch::Prefix("a-").matches(b"a-10"));
        assert!(TagMatch::Prefix("").matches(b"x"));
    }
}
