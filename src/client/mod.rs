//! The client side of every command: talk to the daemon (starting it when needed) and
//! render what it says.

mod connect;
pub mod init;
pub mod presets;
pub mod render;
pub mod reports;
pub mod watch;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{self, DaemonConfig, Settings};
use crate::protocol::{ErrorKind, Request, Response};
use crate::spec;
pub use connect::Client;

/// A failed command: the message for stderr and the exit code.
#[derive(Debug)]
pub struct ClientError {
    pub code: i32,
    pub message: String,
}

impl ClientError {
    pub fn failed(m: impl Into<String>) -> Self {
        ClientError {
            code: 1,
            message: m.into(),
        }
    }
    pub fn bad_input(m: impl Into<String>) -> Self {
        ClientError {
            code: 2,
            message: m.into(),
        }
    }
    pub fn unreachable(m: impl Into<String>) -> Self {
        ClientError {
            code: 3,
            message: m.into(),
        }
    }
}

pub type CmdResult = Result<(), ClientError>;

pub struct Paths {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

impl Paths {
    pub fn from_args(g: &GlobalArgs) -> Paths {
        Paths {
            socket: g.socket.clone().unwrap_or_else(config::default_socket),
            state_dir: g
                .state_dir
                .clone()
                .unwrap_or_else(config::default_state_dir),
        }
    }
}

/// Run a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("arctl: {}", e.message);
            e.code
        }
    }
}

fn dispatch(cli: Cli) -> CmdResult {
    let paths = Paths::from_args(&cli.global);
    match cli.command {
        Command::Daemon { config: file } => daemon(&paths, file),
        Command::Validate { spec, json } => validate(&spec, json),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "arctl", &mut std::io::stdout());
            Ok(())
        }
        Command::Init(args) => init::run(&args),
        Command::Demo { dir } => crate::demo::run(dir),
        Command::Plot { output, .. } if !reports::is_svg(&output) => Err(ClientError::bad_input(format!(
            "{}: only SVG output is supported; name the file *.svg (convert it afterwards, e.g. `rsvg-convert -o progress.png progress.svg`)",
            output.display()
        ))),
        other => block_on(remote(other, &paths, !cli.global.no_autostart)),
    }
}

fn block_on<F: std::future::Future<Output = CmdResult>>(f: F) -> CmdResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::failed(format!("starting the async runtime: {e}")))?
        .block_on(f)
}

fn daemon(paths: &Paths, file: Option<PathBuf>) -> CmdResult {
    let file = file.unwrap_or_else(config::default_config_file);
    let settings = Settings::load(&file).map_err(|e| ClientError::bad_input(format!("{e:#}")))?;
    let cfg = DaemonConfig {
        socket: absolute(&paths.socket),
        state_dir: absolute(&paths.state_dir),
        settings,
    };
    crate::daemon::run(cfg).map_err(|e| ClientError::failed(format!("daemon: {e:#}")))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn json_out<T: serde::Serialize>(v: &T) -> CmdResult {
    let s = serde_json::to_string_pretty(v).map_err(|e| ClientError::failed(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// Load a spec and check it against this machine (`spec::load` does not probe the host).
fn load_checked(path: &Path) -> Result<spec::ResolvedSpec, ClientError> {
    let bad = |e: spec::SpecError| ClientError::bad_input(e.to_string());
    let (resolved, text) = spec::load_text(path).map_err(bad)?;
    let facts = spec::HostFacts {
        instructions: crate::exec::instructions_supported(),
    };
    spec::check_host(&resolved, &text, &facts).map_err(bad)?;
    Ok(resolved)
}

fn validate(path: &Path, json: bool) -> CmdResult {
    let resolved = load_checked(path)?;
    if json {
        return json_out(&resolved);
    }
    let mut shown = resolved.spec.clone();
    shown.id = Some(resolved.id.clone());
    shown.repo = resolved.repo.clone();
    let text = toml::to_string(&shown).map_err(|e| ClientError::failed(e.to_string()))?;
    println!(
        "# {}: valid; resolved with defaults",
        resolved.spec_file.display()
    );
    print!("{text}");
    Ok(())
}

/// Turn an error response into the matching exit code.
fn expect_ok(resp: Response) -> Result<Response, ClientError> {
    match resp {
        Response::Error {
            kind: ErrorKind::BadInput,
            message,
        } => Err(ClientError::bad_input(message)),
        Response::Error { message, .. } => Err(ClientError::failed(message)),
        other => Ok(other),
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::failed(format!("unexpected answer from the daemon: {r:?}"))
}

async fn remote(cmd: Command, paths: &Paths, autostart: bool) -> CmdResult {
    let socket = absolute(&paths.socket);
    let state_dir = absolute(&paths.state_dir);
    // Shutting down a daemon that isn't there must not start one.
    let autostart = autostart && !matches!(cmd, Command::Shutdown);
    if let Command::Start { spec: path, .. } = &cmd {
        // A bad spec is bad input whether or not a daemon runs.
        load_checked(path)?;
    }
    let mut client = Client::connect(&socket, &state_dir, autostart).await?;
    match cmd {
        Command::Start { spec: path, json } => {
            // Validate here first: a bad spec never reaches the daemon, and the error
            // names the file as the user typed it.
            let resolved = load_checked(&path)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ClientError::bad_input(format!("{}: {e}", path.display())))?;
            // Creating a worktree of a big repo takes a while: show that something happens.
            let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
                let pb = indicatif::ProgressBar::new_spinner();
                pb.set_message(format!(
                    "creating the worktree and branch for {}",
                    resolved.id
                ));
                pb.enable_steady_tick(std::time::Duration::from_millis(100));
                pb
            });
            let resp = client
                .call(&Request::Start {
                    spec_path: resolved.spec_file.clone(),
                    spec_text: text,
                })
                .await?;
            if let Some(pb) = spinner {
                pb.finish_and_clear();
            }
            match expect_ok(resp)? {
                Response::Started(s) if json => json_out(&s),
                Response::Started(s) => {
                    println!("{}", s.id);
                    eprintln!(
                        "started run {} on branch {} in {}\n  follow it: arctl status {0} | arctl watch {0} | arctl log {0} -f",
                        s.id,
                        s.branch,
                        s.worktree.display()
                    );
                    Ok(())
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Status { run, json } => {
            let resp = expect_ok(client.call(&Request::Status { run }).await?)?;
            match resp {
                Response::Status { runs, problems } => {
                    if json {
                        // Typed, not through serde_json::Value: building, sorting and
                        // dropping Value maps was ~7% of this command's CPU with 128 runs.
                        #[derive(serde::Serialize)]
                        struct Out<'a> {
                            runs: &'a [crate::run::status::RunSummary],
                            problems: &'a [String],
                        }
                        return json_out(&Out {
                            runs: &runs,
                            problems: &problems,
                        });
                    }
                    print!("{}", render::status_table(&runs));
                    for p in problems {
                        eprintln!("arctl: problem: {p}");
                    }
                    Ok(())
                }
                Response::Detail(d) if json => json_out(&d),
                Response::Detail(d) => {
                    print!("{}", render::detail(&d));
                    Ok(())
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Stop { run, now } => simple(&mut client, Request::Stop { run, now }).await,
        Command::Pause { run } => simple(&mut client, Request::Pause { run }).await,
        Command::Resume { run } => simple(&mut client, Request::Resume { run }).await,
        Command::Shutdown => simple(&mut client, Request::Shutdown).await,
        Command::Log { run, follow } => {
            let mut offset = 0;
            loop {
                let resp = expect_ok(
                    client
                        .call(&Request::Log {
                            run: run.clone(),
                            offset,
                        })
                        .await?,
                )?;
                let Response::Log {
                    text,
                    offset: next,
                    finished,
                } = resp
                else {
                    return Err(unexpected(resp));
                };
                print!("{text}");
                let _ = std::io::stdout().flush();
                offset = next;
                if !follow || (finished && text.is_empty()) {
                    return Ok(());
                }
                if text.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
            }
        }
        Command::Results { run, json } => {
            match expect_ok(client.call(&Request::Results { run }).await?)? {
                Response::Results(t) if json => json_out(&t),
                Response::Results(t) => {
                    print!("{}", render::results(&t));
                    Ok(())
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Report { run, json } => {
            match expect_ok(client.call(&Request::Report { run }).await?)? {
                Response::Report(v) if json => json_out(&v),
                Response::Report(v) => {
                    print!("{}", reports::report(&v));
                    Ok(())
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Plot { run, output } => {
            match expect_ok(client.call(&Request::Results { run }).await?)? {
                Response::Results(t) => reports::write_plot(&t, &output),
                other => Err(unexpected(other)),
            }
        }
        Command::Merge {
            runs,
            into,
            squash,
            dry_run,
            json,
        } => {
            if !dry_run {
                eprintln!("arctl: merging; runs merged on top of others are re-measured first (progress: `arctl log RUN -f`)");
            }
            let req = Request::Merge(crate::protocol::MergeRequest {
                runs,
                into,
                squash,
                dry_run,
            });
            match expect_ok(client.call(&req).await?)? {
                Response::Merge(v) => {
                    if json {
                        json_out(&v)?;
                    } else {
                        print!("{}", reports::merge(&v));
                    }
                    match &v.error {
                        Some(e) => Err(ClientError::failed(format!("the merge stopped: {e}"))),
                        None => Ok(()),
                    }
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Cleanup {
            runs,
            finished,
            force,
            keep_branch,
            json,
        } => {
            let req = Request::Cleanup(crate::protocol::CleanupRequest {
                runs,
                finished,
                force,
                keep_branch,
            });
            match expect_ok(client.call(&req).await?)? {
                Response::Cleanup(v) => {
                    if json {
                        json_out(&v)?;
                    } else {
                        print!("{}", reports::cleanup(&v));
                    }
                    let failed: Vec<&str> = v
                        .runs
                        .iter()
                        .filter(|r| r.error.is_some())
                        .map(|r| r.run.as_str())
                        .collect();
                    if failed.is_empty() {
                        Ok(())
                    } else {
                        Err(ClientError::failed(format!(
                            "could not clean up: {}",
                            failed.join(", ")
                        )))
                    }
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Watch { run } => watch::watch(&mut client, run).await,
        Command::Daemon { .. }
        | Command::Validate { .. }
        | Command::Init(_)
        | Command::Demo { .. }
        | Command::Completions { .. } => unreachable!("handled locally"),
    }
}

async fn simple(client: &mut Client, req: Request) -> CmdResult {
    match expect_ok(client.call(&req).await?)? {
        Response::Ok { message } => {
            println!("{message}");
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}
