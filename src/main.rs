use clap::Parser;

fn main() {
    arctl::app::complete_if_asked();
    quiet_on_closed_stdout();
    let cli = arctl::cli::Cli::parse();
    // `init` and `demo` talk to a person: the daemon's info lines would drown the dialogue.
    let quiet = matches!(
        cli.command,
        arctl::cli::Command::Init(_) | arctl::cli::Command::Demo { .. }
    );
    init_tracing(if quiet && cli.global.verbose == 0 {
        None
    } else {
        Some(cli.global.verbose)
    });
    std::process::exit(arctl::app::main(cli));
}

/// Logs go to stderr; level from RUST_LOG, else -v / -vv (None: warnings only).
fn init_tracing(verbose: Option<u8>) {
    let default = match verbose {
        None => "warn",
        Some(0) => "info",
        Some(1) => "debug",
        Some(_) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a daemon's stderr is usually its log file.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// `arctl status --json | head -c 1`: once the reader is gone, printing fails with EPIPE
/// and `println!` panics. End quietly instead, with the exit code a shell gives a process
/// killed by SIGPIPE (141). SIGPIPE itself stays ignored: the daemon (in-process for the
/// demo) must see a closed socket as an error, not die of it.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
