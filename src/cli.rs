//! The whole user surface: clap definitions of every command and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "arctl",
    version,
    about = "Run many autoresearch loops at once, safely, overnight",
    long_about = "arctl runs autoresearch loops as a background service: propose a change, commit it, \
measure, keep it only if the number really improved, otherwise revert, log, repeat.",
    after_help = "Example:\n  arctl demo                       # the whole story on a bundled sample project\n  arctl start autoresearch.toml    # start a loop; then `arctl status`, `arctl watch`"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Daemon socket [default: $XDG_RUNTIME_DIR/arctl/arctl.sock, else /tmp/arctl-$UID/arctl.sock]
    #[arg(long, global = true, env = "ARCTL_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// State directory [default: $XDG_STATE_HOME/arctl, else ~/.local/state/arctl]
    #[arg(long, global = true, env = "ARCTL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Don't start a daemon when none answers
    #[arg(long, global = true)]
    pub no_autostart: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd runs this)
    #[command(
        after_help = "Example:\n  arctl daemon --socket /tmp/a.sock --state-dir /tmp/arctl-state"
    )]
    Daemon {
        /// Daemon config file [default: $XDG_CONFIG_HOME/arctl/daemon.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a spec, create the worktree and branch, start the loop; prints the run id
    #[command(after_help = "Example:\n  arctl start autoresearch.toml")]
    Start {
        /// The run spec (TOML) to start
        spec: PathBuf,
        /// Run under this id instead of the spec's (e.g. to rerun a finished spec)
        #[arg(long)]
        id: Option<String>,
        /// Print the new run's id, branch and worktree as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check a spec without a daemon; exit 0 (valid) or 2 (invalid)
    #[command(
        after_help = "Example:\n  arctl validate config/examples/pytest-passrate.toml --json"
    )]
    Validate {
        /// The run spec (TOML) to check
        spec: PathBuf,
        /// Print the resolved spec as JSON
        #[arg(long)]
        json: bool,
        /// Treat warnings (a glob matching no tracked file, a judge inside the scope) as
        /// errors: exit 2
        #[arg(long)]
        strict: bool,
    },
    /// Interactive setup (the seed's Phase 1): writes a spec
    ///
    /// Asks for the goal, the metric command and how to read its number, the direction, the
    /// editable scope (each glob checked against the repo's tracked files), guards, budget,
    /// limits, the proposer, web search and the simplicity policy; runs the metric once to show
    /// the number it reads; shows the confirmation table; writes a spec that `arctl validate`
    /// accepts. With --non-interactive the answers come from --set and --preset (exit 2 when
    /// one is missing or the metric prints no number).
    #[command(
        after_help = "Example:\n  arctl init --preset pytest-passrate\n  arctl init --preset list\n  arctl init --non-interactive --preset ty-errors \\\n      --set 'scope.include=src/**' --set 'proposer.command=claude -p'"
    )]
    Init(InitArgs),
    /// Table of runs, or one run in detail
    #[command(after_help = "Example:\n  arctl status\n  arctl status etl-runtime --json")]
    Status {
        /// Show this run in detail (its spec, limits, latest experiments)
        run: Option<String>,
        /// Only the runs still active (starting, running, paused, stopping)
        #[arg(long, conflicts_with = "run")]
        active: bool,
        /// Print as JSON (the shapes are documented in the README)
        #[arg(long)]
        json: bool,
    },
    /// Live progress bars until the runs end (Ctrl-C leaves them running)
    ///
    /// One bar per run (a spinner when it has no experiment budget): experiments done, best so
    /// far and its change, the current step and its time, the last decision. When stdout is not
    /// a terminal, one plain line per change instead. Exit 0 when the runs end, 1 if one
    /// failed, 130 on Ctrl-C (the runs go on).
    #[command(after_help = "Example:\n  arctl watch\n  arctl watch etl-runtime | tee watch.log")]
    Watch {
        /// The run to follow [default: every active run, and any started meanwhile]
        run: Option<String>,
    },
    /// Finish the current experiment, then stop (--now: kill it and revert)
    #[command(after_help = "Example:\n  arctl stop etl-runtime --now")]
    Stop {
        /// The run to stop
        run: String,
        /// Kill the experiment under way and revert it, instead of letting it finish
        #[arg(long)]
        now: bool,
    },
    /// Pause a run after its current experiment
    #[command(after_help = "Example:\n  arctl pause etl-runtime")]
    Pause {
        /// The run to pause
        run: String,
    },
    /// Resume a paused run
    #[command(after_help = "Example:\n  arctl resume etl-runtime")]
    Resume {
        /// The paused run to resume
        run: String,
    },
    /// The run's log
    #[command(after_help = "Example:\n  arctl log etl-runtime -f")]
    Log {
        /// The run whose log to print
        run: String,
        /// Keep printing as the log grows, until the run ends
        #[arg(short, long)]
        follow: bool,
    },
    /// The experiment table
    #[command(after_help = "Example:\n  arctl results etl-runtime --json")]
    Results {
        /// The run whose experiments to list
        run: String,
        /// Print as JSON: every row with its change, confidence and reason
        #[arg(long)]
        json: bool,
    },
    /// The end-of-run report (the seed's Phase 4)
    #[command(after_help = "Example:\n  arctl report etl-runtime")]
    Report {
        /// The run to report on
        run: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// One experiment in full: what was tried, why it was decided so, its diff, the tails
    /// of its outputs
    #[command(
        after_help = "Example:\n  arctl show etl-runtime 7\n  arctl show etl-runtime 7 --diff"
    )]
    Show {
        /// The run
        run: String,
        /// The experiment's number (0 is the baseline)
        experiment: u32,
        /// Print only the experiment's diff
        #[arg(long)]
        diff: bool,
        /// Print as JSON
        #[arg(long, conflicts_with = "diff")]
        json: bool,
    },
    /// An experiment's diff (the same as `show RUN N --diff`)
    #[command(after_help = "Example:\n  arctl diff etl-runtime 7 | less")]
    Diff {
        /// The run
        run: String,
        /// The experiment's number
        experiment: u32,
    },
    /// Plot the metric over experiments as SVG or PNG, kept ones marked
    #[command(
        after_help = "The value axis is logarithmic when the values span more than 100x (all positive), else linear.\n\nExamples:\n  arctl plot etl-runtime -o progress.svg\n  arctl plot etl-runtime -o progress.png --log"
    )]
    Plot {
        /// The run to plot
        run: String,
        /// The file to write: *.svg, or *.png for a picture (twice the SVG's 820x500)
        #[arg(short, long, default_value = "progress.svg")]
        output: PathBuf,
        /// A logarithmic value axis, whatever the range (the values must be positive)
        #[arg(long, conflicts_with = "linear")]
        log: bool,
        /// A linear value axis, whatever the range
        #[arg(long)]
        linear: bool,
    },
    /// Merge finished runs in order of improvement, re-measuring each on top of the last
    #[command(
        after_help = "Example:\n  arctl merge --dry-run\n  arctl merge etl-runtime ty-errors --into main --squash"
    )]
    Merge {
        /// The runs to merge [default: every finished or stopped run with a kept improvement]
        runs: Vec<String>,
        /// Land on this branch instead of the runs' base (created at the base if missing)
        #[arg(long, value_name = "BRANCH")]
        into: Option<String>,
        /// One commit per run, its message listing the kept experiments
        #[arg(long)]
        squash: bool,
        /// Print the plan (order, method, what would be re-measured) and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Print the merge report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove worktrees, branches without improvement and exclude lines; history stays
    #[command(after_help = "Example:\n  arctl cleanup --finished")]
    Cleanup {
        /// The runs to clean up
        runs: Vec<String>,
        /// Clean up every run that has ended
        #[arg(long, conflicts_with = "runs")]
        finished: bool,
        /// Also delete improved, unmerged branches and worktrees with uncommitted edits
        #[arg(long)]
        force: bool,
        /// Keep every branch (remove only worktrees, refs and exclude lines)
        #[arg(long)]
        keep_branch: bool,
        /// Print the cleanup report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a note to every later prompt of a run (steer the agent), or clear the notes
    #[command(
        after_help = "Example:\n  arctl note etl-runtime \"the parser is not the bottleneck; look at I/O\"\n  arctl note etl-runtime --clear"
    )]
    Note {
        /// The run to steer
        run: String,
        /// The note, in plain words
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        text: Option<String>,
        /// Remove every note of the run
        #[arg(long)]
        clear: bool,
    },
    /// Drop an ended, cleaned-up run from the list (its history moves aside)
    #[command(
        after_help = "Example:\n  arctl forget etl-runtime\n  arctl forget etl-runtime --purge"
    )]
    Forget {
        /// The run to forget
        run: String,
        /// Delete its history from the state dir instead of keeping it aside
        #[arg(long)]
        purge: bool,
    },
    /// The whole story on a bundled sample project (no AI needed)
    ///
    /// Creates a small git project with two real inefficiencies, starts two racing runs with
    /// disjoint scopes and built-in proposers (a folder of patches, a parameter search) on a
    /// daemon of its own (socket and state inside the folder: yours is never touched), watches
    /// them, merges them in order of improvement, prints the reports and writes the plots.
    /// Needs only git, sh and awk; takes a few seconds.
    #[command(after_help = "Example:\n  arctl demo --dir /tmp/arctl-demo")]
    Demo {
        /// Folder to create the sample project in [default: a new temp folder]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Stop the daemon (runs are stopped cleanly and resume on the next start)
    #[command(after_help = "Example:\n  arctl shutdown")]
    Shutdown,
    /// Print a shell's completion script (it completes run ids from a running daemon)
    #[command(
        after_help = "Example:\n  echo 'source <(arctl completions bash)' >> ~/.bashrc\n  arctl completions fish > ~/.config/fish/completions/arctl.fish"
    )]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write the man pages (arctl.1 and one per command)
    #[command(after_help = "Example:\n  arctl man --dir ~/.local/share/man/man1 && man arctl")]
    Man {
        /// Folder to write the pages in [default: print arctl.1 to stdout]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Pre-fill the metric from a preset: python-runtime, python-memory, pytest-passrate,
    /// pytest-duration, coverage, ty-errors, postgres-explain, pgbench-tps, ml-val-loss,
    /// sklearn-cv, cargo-bench (`--preset list` describes them)
    #[arg(long)]
    pub preset: Option<String>,
    /// The spec file to write
    #[arg(short, long, default_value = "autoresearch.toml")]
    pub output: PathBuf,
    /// Don't ask; take values from --set and the preset
    #[arg(long)]
    pub non_interactive: bool,
    /// KEY=VALUE with KEY dotted as in the spec (metric.command) and VALUE in TOML syntax
    /// (a bare word is a string; a single value appends to a list key; empty clears)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Overwrite FILE if it exists
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is (in `--help` and the man
    /// pages).
    #[test]
    fn every_flag_and_argument_has_a_description() {
        let cmd = super::Cli::command();
        let mut missing = Vec::new();
        let mut check = |path: String, c: &clap::Command| {
            if c.get_about().is_none() {
                missing.push(format!("{path}: the command itself"));
            }
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" || a.is_hide_set() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
        };
        check("arctl".into(), &cmd);
        for sub in cmd.get_subcommands() {
            check(format!("arctl {}", sub.get_name()), sub);
        }
        assert!(missing.is_empty(), "no description: {missing:#?}");
    }
}
