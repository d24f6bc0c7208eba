//! Finding the daemon: connect, handshake, and start one in the background when none answers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use super::Error;
use crate::protocol::{Connection, Request, Response, PROTOCOL_VERSION};

pub struct Client {
    conn: Connection<UnixStream>,
}

/// How long a started daemon gets to answer.
const AUTOSTART_DEADLINE: Duration = Duration::from_secs(15);

impl Client {
    /// Connect to the daemon at `socket`; start one (with the same socket and state dir)
    /// when nothing answers and `autostart` is on.
    pub async fn connect(
        socket: &Path,
        state_dir: &Path,
        autostart: bool,
    ) -> Result<Client, Error> {
        match Self::try_connect(socket).await {
            Ok(c) => return Ok(c),
            Err(Some(e)) => return Err(e),
            Err(None) if !autostart => {
                return Err(Error::unreachable(format!(
                    "the daemon is not running (no answer on {}); start it with `arctl daemon` or drop --no-autostart",
                    socket.display()
                )))
            }
            Err(None) => {}
        }
        let log = spawn_daemon(socket, state_dir)?;
        let deadline = Instant::now() + AUTOSTART_DEADLINE;
        let mut delay = Duration::from_millis(10);
        loop {
            match Self::try_connect(socket).await {
                Ok(c) => return Ok(c),
                Err(Some(e)) => return Err(e),
                Err(None) if Instant::now() < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                Err(None) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                    return Err(Error::unreachable(format!(
                        "started a daemon but it did not answer on {} within {}s; its log {}:\n{}",
                        socket.display(),
                        AUTOSTART_DEADLINE.as_secs(),
                        log.display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )));
                }
            }
        }
    }

    /// Ok: connected and shook hands. Err(None): nobody answers. Err(Some): a daemon
    /// answered but refused us.
    async fn try_connect(socket: &Path) -> Result<Client, Option<Error>> {
        let stream = match UnixStream::connect(socket).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(Some(permission_denied(socket)))
            }
            Err(_) => return Err(None),
        };
        let mut c = Client {
            conn: Connection::new(stream),
        };
        match c
            .call(&Request::Hello {
                version: PROTOCOL_VERSION,
            })
            .await
        {
            Ok(Response::Hello { .. }) => Ok(c),
            Ok(Response::Error(e)) => Err(Some(e)),
            Ok(other) => Err(Some(Error::failed(format!(
                "unexpected handshake answer: {other:?}"
            )))),
            Err(e) => Err(Some(e)),
        }
    }

    pub async fn call(&mut self, req: &Request) -> Result<Response, Error> {
        self.conn
            .write(req)
            .await
            .map_err(|e| Error::unreachable(format!("sending to the daemon: {e}")))?;
        self.conn
            .read::<Response>()
            .await
            .map_err(|e| Error::unreachable(format!("reading from the daemon: {e}")))
    }
}

/// Start `arctl daemon` detached, its output in `<state_dir>/daemon.log`.
fn spawn_daemon(socket: &Path, state_dir: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::process::CommandExt;
    crate::config::create_private_dir(state_dir).map_err(|e| Error::failed(format!("{e:#}")))?;
    let log = state_dir.join("daemon.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| Error::failed(format!("opening {}: {e}", log.display())))?;
    let err = out.try_clone().map_err(|e| Error::failed(e.to_string()))?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::failed(format!("finding arctl's own path: {e}")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    // Its own session: the daemon outlives this client and its terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::failed(format!("starting the daemon: {e}")))?;
    // Reap it when it exits so no zombie stays behind this (short-lived) client.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    eprintln!(
        "arctl: started a daemon (socket {}, state {})",
        socket.display(),
        state_dir.display()
    );
    Ok(log)
}

/// The socket (or its folder) is not ours to open: another user's daemon, or a folder with
/// the wrong mode. Saying "not running" would send the user starting a second daemon.
fn permission_denied(socket: &Path) -> Error {
    use std::os::unix::fs::MetadataExt;
    let owner = [socket, socket.parent().unwrap_or(Path::new("/"))]
        .iter()
        .find_map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (p.to_path_buf(), m.uid()))
        });
    let whose = match owner {
        Some((p, uid)) => format!(" ({} is owned by uid {uid})", p.display()),
        None => String::new(),
    };
    Error::unreachable(format!(
        "permission denied on {}{whose}: this is not your daemon's socket; use your own with --socket or ARCTL_SOCKET",
        socket.display()
    ))
}
