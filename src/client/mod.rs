//! The client side of every command that talks to the daemon: connect (starting a daemon
//! when needed), send one request, render the answer. One file per command;
//! `completions` works without a daemon. The client imports only the wire
//! types (`protocol`), the spec, the command line and the leaf modules `config` and
//! `host`.

mod cleanup;
mod connect;
mod control;
mod log;
mod merge;
mod results;
pub mod shell;
mod show;
mod start;
mod status;
pub mod watch;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config;
use crate::protocol::{Request, Response};
pub use connect::Client;

/// A failed command: the message for stderr, and its kind for the exit code.
pub use crate::protocol::Error;

pub type CmdResult = Result<(), Error>;

/// Where the daemon is: its socket and state dir, from the command line or the defaults.
pub struct Paths {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

impl Paths {
    /// From the environment and the defaults alone (a shell's completion request carries
    /// no parsed flags).
    pub fn from_env() -> Paths {
        let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
        Paths::from_args(&GlobalArgs {
            socket: var("ARCTL_SOCKET"),
            state_dir: var("ARCTL_STATE_DIR"),
            no_autostart: true,
            verbose: 0,
        })
    }

    pub fn from_args(g: &GlobalArgs) -> Paths {
        Paths {
            socket: absolute(&g.socket.clone().unwrap_or_else(config::default_socket)),
            state_dir: absolute(
                &g.state_dir
                    .clone()
                    .unwrap_or_else(config::default_state_dir),
            ),
        }
    }
}

/// Run a parsed command line (not `daemon` or `demo`); returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    exit_code(dispatch(cli))
}

/// Print a failed command's message; its exit code.
pub fn exit_code(result: CmdResult) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("arctl: {}", e.message);
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> CmdResult {
    let paths = Paths::from_args(&cli.global);
    match cli.command {
        Command::Completions { shell } => shell::completions(shell),
        Command::Daemon { .. }
        | Command::Demo { .. }
        | Command::Init(_)
        | Command::Validate { .. }
        | Command::Man { .. } => Err(Error::failed(
            "internal error: `daemon`, `demo`, `init`, `validate` and `man` do not run in the client",
        )),
        other => block_on(remote(other, &paths, !cli.global.no_autostart)),
    }
}

fn block_on<F: std::future::Future<Output = CmdResult>>(f: F) -> CmdResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("starting the async runtime: {e}")))?
        .block_on(f)
}

/// A path made absolute against the current directory (the daemon has its own).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Load a spec and check it against this machine (what needs no repository and no
/// daemon); the spec and its text.
pub fn load_checked(path: &Path) -> Result<(crate::spec::ResolvedSpec, String), Error> {
    let bad = |e: crate::spec::SpecError| Error::bad_input(e.to_string());
    let (resolved, text) = crate::spec::load_text(path).map_err(bad)?;
    crate::spec::check_host(&resolved, &text, &crate::host::facts()).map_err(bad)?;
    Ok((resolved, text))
}

/// Writing to stdout failed: a reader that went away (`| head`) ends the command quietly
/// with the shell's code for SIGPIPE (see `main.rs`); anything else is an error.
pub fn stdout_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    Error::failed(format!("writing to stdout: {e}"))
}

pub fn json_out<T: serde::Serialize>(v: &T) -> CmdResult {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::failed(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// An error answer as the command's error (its kind gives the exit code).
fn expect_ok(resp: Response) -> Result<Response, Error> {
    match resp {
        Response::Error(e) => Err(e),
        other => Ok(other),
    }
}

fn unexpected(r: Response) -> Error {
    Error::failed(format!("unexpected answer from the daemon: {r:?}"))
}

/// A command that needs the daemon: checks that need none first, then connect and run it.
async fn remote(cmd: Command, paths: &Paths, autostart: bool) -> CmdResult {
    // Shutting down a daemon that isn't there must not start one.
    let autostart = autostart && !matches!(cmd, Command::Shutdown);
    // Bad input is bad input whether or not a daemon runs.
    let start = match &cmd {
        Command::Start { spec, id, .. } => {
            if let Some(id) = id {
                crate::spec::RunId::parse(id)
                    .map_err(|e| Error::bad_input(format!("--id: {e}")))?;
            }
            Some(load_checked(spec)?)
        }
        Command::Plot { output, .. } => {
            results::check_plot_file(output)?;
            None
        }
        _ => None,
    };
    let mut client = Client::connect(&paths.socket, &paths.state_dir, autostart).await?;
    match cmd {
        Command::Start { json, id, .. } => {
            let (resolved, text) = start.expect("checked above");
            start::run(&mut client, &resolved, text, id, json).await
        }
        Command::Status { run, json, active } => status::run(&mut client, run, json, active).await,
        Command::Note { run, text, clear } => {
            let text = if clear { None } else { text };
            control::run(&mut client, Request::Note { run, text }).await
        }
        Command::Forget { run, purge } => {
            control::run(&mut client, Request::Forget { run, purge }).await
        }
        Command::Stop { run, now } => control::run(&mut client, Request::Stop { run, now }).await,
        Command::Pause { run } => control::run(&mut client, Request::Pause { run }).await,
        Command::Resume { run } => control::run(&mut client, Request::Resume { run }).await,
        Command::Shutdown => control::run(&mut client, Request::Shutdown).await,
        Command::Log { run, follow } => log::run(&mut client, run, follow).await,
        Command::Results { run, json } => results::results(&mut client, run, json).await,
        Command::Report { run, json } => results::report(&mut client, run, json).await,
        Command::Plot {
            run,
            output,
            log,
            linear,
        } => {
            let choice = match (log, linear) {
                (true, _) => crate::plot::ScaleChoice::Log,
                (_, true) => crate::plot::ScaleChoice::Linear,
                _ => crate::plot::ScaleChoice::Auto,
            };
            results::plot(&mut client, run, &output, choice).await
        }
        Command::Show {
            run,
            experiment,
            diff,
            json,
        } => show::run(&mut client, run, experiment, diff, json).await,
        Command::Diff { run, experiment } => {
            show::run(&mut client, run, experiment, true, false).await
        }
        Command::Merge {
            runs,
            into,
            squash,
            dry_run,
            json,
        } => {
            let req = crate::protocol::MergeRequest {
                runs,
                into,
                squash,
                dry_run,
            };
            merge::run(&mut client, req, json).await
        }
        Command::Cleanup {
            runs,
            finished,
            force,
            keep_branch,
            json,
        } => {
            let req = crate::protocol::CleanupRequest {
                runs,
                finished,
                force,
                keep_branch,
            };
            cleanup::run(&mut client, req, json).await
        }
        Command::Watch { run } => watch::watch(&mut client, run).await,
        Command::Daemon { .. }
        | Command::Validate { .. }
        | Command::Init(_)
        | Command::Demo { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled locally"),
    }
}
