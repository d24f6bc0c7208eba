//! The entry point below `main`: the commands that run here rather than talk to a daemon —
//! `daemon` (the daemon itself, in the foreground), `demo` (a daemon of its own plus client
//! commands), `init` (a dialogue with the user and their repository) and `validate` (the
//! spec against this host and its repository) — and the client for everything else.

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::client::{self, CmdResult, Error, Paths};
use crate::config::{self, DaemonConfig, Settings};

/// Run a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Daemon { config: file } => {
            client::exit_code(daemon(&Paths::from_args(&cli.global), file))
        }
        Command::Demo { dir } => client::exit_code(crate::demo::run(dir)),
        Command::Init(args) => client::exit_code(crate::init::run(&args)),
        Command::Man { dir } => client::exit_code(client::shell::man(
            dir.as_deref(),
            crate::init::presets::names,
        )),
        Command::Validate { spec, json, strict } => {
            client::exit_code(crate::validate::run(&spec, json, strict))
        }
        _ => client::main(cli),
    }
}

/// A shell asking for completions gets them here, before anything else runs (it exits).
pub fn complete_if_asked() {
    client::shell::complete_if_asked(crate::init::presets::names);
}

/// `arctl daemon`: read the daemon config and serve until stopped.
fn daemon(paths: &Paths, file: Option<PathBuf>) -> CmdResult {
    let file = file.unwrap_or_else(config::default_config_file);
    let settings = Settings::load(&file).map_err(|e| Error::bad_input(format!("{e:#}")))?;
    let cfg = DaemonConfig {
        socket: paths.socket.clone(),
        state_dir: paths.state_dir.clone(),
        settings,
    };
    crate::daemon::run(cfg).map_err(|e| Error::failed(format!("daemon: {e:#}")))
}
