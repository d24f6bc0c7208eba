//! The Unix socket: binding safely, checking who connects, the handshake, and one task per
//! connection that reads requests and writes responses.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use super::handlers;
use super::Registry;
use crate::protocol::{
    Connection, Error, ErrorKind, FrameError, Request, Response, MAX_REQUEST, PROTOCOL_VERSION,
};

/// Bind the socket: 0600 in a 0700 folder; a stale file is replaced only when nothing
/// answers on it.
pub fn bind(socket: &Path) -> Result<UnixListener> {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    crate::config::create_private_dir(dir)?;
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            bail!(
                "a daemon is already listening on {} (use it, or `arctl shutdown` first)",
                socket.display()
            );
        }
        tracing::info!(socket = %socket.display(), "replacing a stale socket file");
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What one peer may hold of the daemon, so that a flood of connections (or one that
/// announces a huge frame and trickles it) can neither exhaust its memory nor its file
/// descriptors, and `arctl status` still answers.
mod limits {
    use std::time::Duration;

    /// Connections served at once (fewer when file descriptors are scarce, see
    /// `max_connections`); more are told so and closed.
    pub const MAX_CONNECTIONS: usize = 512;
    /// The hello frame is tiny and must come at once.
    pub const HELLO_MAX: usize = 4096;
    pub const HANDSHAKE: Duration = Duration::from_secs(5);
    /// From a frame's length to its last byte.
    pub const FRAME: Duration = Duration::from_secs(30);
    /// Between two requests of one connection (`log -f` and `watch` ask every second).
    pub const IDLE: Duration = Duration::from_secs(120);
    /// Frames up to this size need no share of the budget below (512 × 64 KiB = 32 MiB).
    pub const SMALL_FRAME: usize = 64 * 1024;
    /// Bytes of bigger frames (specs of `start`) being read at once, over all connections.
    pub const BIG_FRAME_BUDGET: usize = 32 * 1024 * 1024;
}

pub async fn accept_loop(
    listener: UnixListener,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let my_uid = nix::unistd::getuid().as_raw();
    let cap = max_connections();
    let slots = Arc::new(Semaphore::new(cap));
    let budget = Arc::new(Semaphore::new(limits::BIG_FRAME_BUDGET));
    let idle = Arc::new(Idle::default());
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = registry.shutdown_requested() => return Ok(()),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => {
                        backoff.reset();
                        stream
                    }
                    Err(e) => {
                        tokio::time::sleep(backoff.failed(&e)).await;
                        continue;
                    }
                };
                let (registry, budget, idle, slots) =
                    (registry.clone(), budget.clone(), idle.clone(), slots.clone());
                tokio::spawn(async move {
                    let Some(slot) = take_slot(&slots, &idle).await else {
                        return refuse_busy(stream, cap).await;
                    };
                    let peer = Peer { uid: my_uid, id: idle.next_id(), idle: &idle, budget: &budget };
                    if let Err(e) = connection(stream, registry, &peer).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                    idle.busy(peer.id);
                    drop(slot);
                });
            }
        }
    }
}

/// Failed accepts (out of file descriptors: EMFILE, ENFILE) back off instead of spinning,
/// and are logged once per interval, not once per failure.
#[derive(Default)]
struct AcceptBackoff {
    delay: Option<Duration>,
    failures: u64,
    logged: Option<Instant>,
}

impl AcceptBackoff {
    const LOG_EVERY: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(1);

    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.failures += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= Self::LOG_EVERY) {
            tracing::warn!(error = %e, failures = self.failures, "accept failed; backing off");
            self.logged = Some(Instant::now());
        }
        let next = self
            .delay
            .map(|d| (d * 2).min(Self::MAX))
            .unwrap_or(Duration::from_millis(10));
        self.delay = Some(next);
        next
    }

    fn reset(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
        }
        *self = AcceptBackoff {
            logged: self.logged,
            ..AcceptBackoff::default()
        };
    }
}

/// The connection cap: [`limits::MAX_CONNECTIONS`], or a quarter of the file descriptors
/// this process may open (the runs need the rest: pipes, git, logs).
fn max_connections() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft as usize)
        .unwrap_or(1024);
    limits::MAX_CONNECTIONS.min(soft / 4).max(4)
}

/// What a connection's task holds of the server's shared limits.
struct Peer<'a> {
    /// The daemon's uid: the only one served.
    uid: u32,
    id: u64,
    idle: &'a Idle,
    budget: &'a Semaphore,
}

/// Connections waiting for their next request, and since when: at the cap, the one idle
/// longest (past [`Idle::EVICT_AFTER`]) is closed to make room, so connections opened and
/// left idle cannot lock everyone else out.
#[derive(Default)]
struct Idle {
    waiting: std::sync::Mutex<std::collections::HashMap<u64, (Instant, Arc<tokio::sync::Notify>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Idle {
    const EVICT_AFTER: Duration = Duration::from_secs(5);

    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn waiting(&self, id: u64, wake: Arc<tokio::sync::Notify>) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.insert(id, (Instant::now(), wake));
    }

    fn busy(&self, id: u64) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.remove(&id);
    }

    /// Close the connection idle longest, if one is idle long enough.
    fn evict_one(&self) -> bool {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = w
            .iter()
            .filter(|(_, (since, _))| since.elapsed() >= Self::EVICT_AFTER)
            .min_by_key(|(_, (since, _))| *since)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| w.remove(&id)) {
            Some((_, wake)) => {
                wake.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection slot: free, or made free by closing the longest-idle connection.
async fn take_slot(
    slots: &Arc<Semaphore>,
    idle: &Idle,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    if !idle.evict_one() {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Over the connection cap: say so (briefly) and close.
async fn refuse_busy(stream: UnixStream, cap: usize) {
    let mut conn = Connection::new(stream);
    let msg = Response::failed(format!(
        "the daemon is serving {cap} connections already; try again in a moment"
    ));
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.write(&msg)).await;
}

/// Read one request: its length within `wait` (the handshake's, or the idle deadline; an
/// idle connection may be closed to make room, see [`Idle`]), its body within the frame
/// deadline, at most `max` bytes; bodies over the small size take their share of the
/// daemon-wide budget while they are read.
async fn read_request(
    conn: &mut Connection<UnixStream>,
    max: usize,
    wait: Duration,
    peer: &Peer<'_>,
) -> Result<Request, FrameError> {
    let timed_out = |what: &str| {
        FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no {what} within the deadline"),
        ))
    };
    let wake = Arc::new(tokio::sync::Notify::new());
    peer.idle.waiting(peer.id, wake.clone());
    let len = tokio::select! {
        len = tokio::time::timeout(wait, conn.read_len(max)) => len,
        _ = wake.notified() => return Err(FrameError::Closed),
    };
    peer.idle.busy(peer.id);
    let len = len.map_err(|_| timed_out("request"))??;
    let budget = peer.budget;
    let _share = if len > limits::SMALL_FRAME {
        let permits = u32::try_from(len).unwrap_or(u32::MAX);
        let share = tokio::time::timeout(limits::FRAME, budget.acquire_many(permits)).await;
        Some(
            share
                .map_err(|_| timed_out("room for the request"))?
                .map_err(|_| FrameError::Closed)?,
        )
    } else {
        None
    };
    let req = tokio::time::timeout(limits::FRAME, conn.read_body(len))
        .await
        .map_err(|_| timed_out("complete request"))?;
    if len > limits::SMALL_FRAME {
        trim_memory();
    }
    req
}

/// Hand memory freed by a big request back to the system (glibc keeps it otherwise).
fn trim_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn connection(stream: UnixStream, registry: Arc<Registry>, me: &Peer<'_>) -> Result<()> {
    let my_uid = me.uid;
    let peer = stream.peer_cred()?;
    let peer_pid = peer_pid(&stream, peer.pid());
    let mut conn = Connection::new(stream);
    if peer.uid() != my_uid {
        tracing::warn!(
            peer_uid = peer.uid(),
            "refused a connection from another user"
        );
        // Take its hello first, so the refusal reaches it instead of a broken pipe.
        let _ = read_request(&mut conn, limits::HELLO_MAX, limits::HANDSHAKE, me).await;
        let _ = conn
            .write(&Response::bad_input(format!(
                "permission denied: this daemon serves uid {my_uid} only, you are uid {}",
                peer.uid()
            )))
            .await;
        return Ok(());
    }
    // Handshake.
    match read_request(&mut conn, limits::HELLO_MAX, limits::HANDSHAKE, me).await {
        Ok(Request::Hello { version }) if version == PROTOCOL_VERSION => {
            conn.write(&Response::Hello {
                version: PROTOCOL_VERSION,
                daemon_pid: std::process::id(),
            })
            .await?;
        }
        Ok(Request::Hello { version }) => {
            conn.write(&Response::Error(Error::new(
                ErrorKind::Version,
                format!(
                    "protocol version mismatch: the client speaks {version}, the daemon speaks {PROTOCOL_VERSION}; restart the daemon with the same arctl (`arctl shutdown`)"
                ),
            )))
            .await?;
            return Ok(());
        }
        Ok(_) => {
            conn.write(&Response::bad_input(
                "expected a hello frame with the protocol version first",
            ))
            .await?;
            return Ok(());
        }
        Err(e) => return reply_frame_error(&mut conn, e).await,
    }
    loop {
        let req = match read_request(&mut conn, MAX_REQUEST, limits::IDLE, me).await {
            Ok(r) => r,
            Err(e) => return reply_frame_error(&mut conn, e).await,
        };
        tracing::debug!(?req, "request");
        if let Some(refusal) = refuse_own_children(&req, peer_pid) {
            conn.write(&refusal).await?;
            continue;
        }
        let resp = handlers::handle(&registry, req).await;
        conn.write(&resp).await?;
    }
}

/// A bad frame: say why (if the peer can still hear it) and close this connection only.
async fn reply_frame_error(conn: &mut Connection<UnixStream>, e: FrameError) -> Result<()> {
    match e {
        FrameError::Closed => Ok(()),
        FrameError::Io(e) => Err(e.into()),
        other => {
            tracing::warn!(error = %other, "bad frame; closing the connection");
            let _ = conn
                .write(&Response::bad_input(format!("bad request: {other}")))
                .await;
            Ok(())
        }
    }
}

/// The connecting process's pid as this daemon sees it: through a pidfd of the peer
/// (SO_PEERPIDFD, Linux >= 6.5: it names the very process that connected, dead or alive,
/// never a recycled pid), else SO_PEERCRED's pid. None: gone, or not visible from here
/// (a process in a PID namespace this daemon cannot see into).
fn peer_pid(stream: &UnixStream, cred_pid: Option<i32>) -> Option<u32> {
    use std::os::fd::AsRawFd;
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int into `fd`.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            &mut fd as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 || fd < 0 {
        return cred_pid.filter(|&p| p > 0).map(|p| p as u32);
    }
    // SAFETY: getsockopt returned a new fd that we own.
    let pidfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    let pid: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()?;
    (pid > 0).then_some(pid as u32)
}

/// A request that changes something, from a process this daemon started (a run's agent,
/// metric or guard, or anything below them), is refused: the children may look, not steer.
/// So is one whose sender cannot be traced (it exited, or is out of sight).
fn refuse_own_children(req: &Request, peer_pid: Option<u32>) -> Option<Response> {
    if !req.changes_state() {
        return None;
    }
    let why = match peer_pid.map(crate::exec::started_by_arctl) {
        Some(Some(false)) => return None,
        Some(Some(true)) => "it comes from a process arctl started (a run's agent, metric or guard command, or one of theirs)",
        _ => "the process that sent it cannot be traced (it exited, or lives where this daemon cannot see)",
    };
    tracing::warn!(?peer_pid, "refused a state-changing request: {why}");
    Some(Response::Error(Error::new(
        ErrorKind::BadInput,
        format!("refused: {why}; children of arctl may only read (status, results, report, log)"),
    )))
}
