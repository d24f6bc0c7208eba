use clap::Parser;

fn main() {
    let cli = arctl::cli::Cli::parse();
    init_tracing(cli.global.verbose);
    std::process::exit(arctl::client::main(cli));
}

/// Logs go to stderr; level from RUST_LOG, else -v / -vv.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
