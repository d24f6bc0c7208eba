//! The command line about itself: shell completion (scripts that call back into arctl, so
//! run ids are completed from a running daemon — never starting one — and presets from the
//! built-in list) and man pages generated from the clap definitions.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

use super::{CmdResult, Error};
use crate::cli::Cli;
use crate::protocol::{Request, Response};

/// The environment variable a shell sets when it asks arctl for completions.
pub const COMPLETE_VAR: &str = "COMPLETE";

/// Preset names `init --preset` takes (the init module owns the list; the client only
/// completes them).
pub type Presets = fn() -> Vec<&'static str>;

/// The command-line definition with its dynamic completers attached.
pub fn command(presets: Presets) -> clap::Command {
    let runs = || ArgValueCompleter::new(run_ids);
    let mut cmd = Cli::command();
    for name in [
        "status", "watch", "stop", "pause", "resume", "log", "results", "report", "plot",
    ] {
        cmd = cmd.mut_subcommand(name, |c| c.mut_arg("run", |a| a.add(runs())));
    }
    for name in ["merge", "cleanup"] {
        cmd = cmd.mut_subcommand(name, |c| c.mut_arg("runs", |a| a.add(runs())));
    }
    cmd.mut_subcommand("init", |c| {
        c.mut_arg("preset", |a| {
            a.add(ArgValueCompleter::new(move |current: &OsStr| {
                let current = current.to_string_lossy();
                std::iter::once("list")
                    .chain(presets())
                    .filter(|p| p.starts_with(&*current))
                    .map(CompletionCandidate::new)
                    .collect::<Vec<_>>()
            }))
        })
    })
}

/// Answer a shell's completion request, if this process is one (then it exits).
pub fn complete_if_asked(presets: Presets) {
    clap_complete::CompleteEnv::with_factory(move || command(presets))
        .var(COMPLETE_VAR)
        .complete();
}

/// `arctl completions SHELL`: the registration script, pointing at this binary.
pub fn completions(shell: clap_complete::Shell) -> CmdResult {
    let name = shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| Error::bad_input(format!("no completion support for {name}")))?;
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "arctl".into());
    let mut out = std::io::stdout().lock();
    completer
        .write_registration(COMPLETE_VAR, "arctl", "arctl", &bin, &mut out)
        .map_err(super::stdout_error)
}

/// The run ids a running daemon knows that start with `current` (none when no daemon
/// answers quickly: completion must never start one or hang).
fn run_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy().to_string();
    let paths = super::Paths::from_env();
    let ask = async {
        let mut c = super::Client::connect(&paths.socket, &paths.state_dir, false).await?;
        c.call(&Request::Status { run: None }).await
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let answer = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), ask).await });
    let Ok(Ok(Response::Status { runs, .. })) = answer else {
        return Vec::new();
    };
    runs.into_iter()
        .filter(|r| r.id.starts_with(&current))
        .map(|r| CompletionCandidate::new(r.id).help(Some(r.state.as_str().into())))
        .collect()
}

/// `arctl man`: the man pages, printed (arctl.1) or written to `dir` (one per command).
pub fn man(dir: Option<&Path>, presets: Presets) -> CmdResult {
    let cmd = command(presets);
    let Some(dir) = dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .and_then(|_| out.flush())
            .map_err(super::stdout_error)?;
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::failed(format!("creating {}: {e}", dir.display())))?;
    let write = |name: &str, page: clap::Command| {
        let path = dir.join(format!("{name}.1"));
        let mut f = std::fs::File::create(&path)
            .map_err(|e| Error::failed(format!("writing {}: {e}", path.display())))?;
        clap_mangen::Man::new(page)
            .render(&mut f)
            .map_err(|e| Error::failed(format!("writing {}: {e}", path.display())))
    };
    write("arctl", cmd.clone())?;
    let mut n = 1;
    for sub in cmd.get_subcommands() {
        let name = format!("arctl-{}", sub.get_name());
        // The page's title is its file's name (a static string is what clap stores).
        let title: &'static str = Box::leak(name.clone().into_boxed_str());
        write(&name, sub.clone().name(title))?;
        n += 1;
    }
    println!("wrote {n} man pages to {}", dir.display());
    Ok(())
}
