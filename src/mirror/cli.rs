//! Command-line arguments for `mirror scan`, `crawl`, `metalink` and `serve`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Walk a master tree and record every ostree and yum repository in it
    Scan(ScanArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory mirror scan /srv/pub -o state.json")]
pub struct ScanArgs {
    /// The master tree to walk
    pub root: PathBuf,
    /// Where to write the state
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(cmd: MirrorCommand) -> anyhow::Result<()> {
    match cmd {
        MirrorCommand::Scan(_) => anyhow::bail!("not implemented yet (issue #8)"),
    }
}
