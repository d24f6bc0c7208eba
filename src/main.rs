use clap::Parser;

fn main() {
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
