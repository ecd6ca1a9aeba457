//! The `atomic-factory` binary: parse the command line, run it, report errors once.

use clap::Parser;

fn main() {
    atomic_factory::cli::init_logging();
    let cli = atomic_factory::cli::Cli::parse();
    if let Err(err) = atomic_factory::cli::run(cli) {
        // `{:#}` prints the whole context chain on one line: "committing tree: reading a/b: Permission denied".
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
