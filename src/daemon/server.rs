//! The Unix socket: binding safely, checking who connects, the handshake, and one task per
//! connection that reads requests and writes responses.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::handlers;
use super::Registry;
use crate::protocol::{
    Connection, Error, ErrorKind, FrameError, Request, Response, PROTOCOL_VERSION,
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

pub async fn accept_loop(
    listener: UnixListener,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let my_uid = nix::unistd::getuid().as_raw();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = registry.shutdown_requested() => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, registry, my_uid).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
        }
    }
}

async fn connection(stream: UnixStream, registry: Arc<Registry>, my_uid: u32) -> Result<()> {
    let peer = stream.peer_cred()?;
    let peer_pid = peer_pid(&stream, peer.pid());
    let mut conn = Connection::new(stream);
    if peer.uid() != my_uid {
        tracing::warn!(
            peer_uid = peer.uid(),
            "refused a connection from another user"
        );
        // Take its hello first, so the refusal reaches it instead of a broken pipe.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), conn.read::<Request>()).await;
        let _ = conn
            .write(&Response::bad_input(format!(
                "permission denied: this daemon serves uid {my_uid} only, you are uid {}",
                peer.uid()
            )))
            .await;
        return Ok(());
    }
    // Handshake.
    match conn.read::<Request>().await {
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
        let req = match conn.read::<Request>().await {
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
