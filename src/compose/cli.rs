//! Command-line arguments for `compose`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Compose a treefile's packages into a commit (like `rpm-ostree compose tree`)
    Tree(ComposeTreeArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory compose tree --repo=repo kickstarts/demo/treefile.yaml"
)]
pub struct ComposeTreeArgs {
    /// Path of the archive repository to commit into
    #[arg(long)]
    pub repo: PathBuf,
    /// The treefile (YAML or JSON)
    pub treefile: PathBuf,
}

pub fn run(cmd: ComposeCommand) -> anyhow::Result<()> {
    match cmd {
        ComposeCommand::Tree(_args) => anyhow::bail!("not implemented yet (issue #3)"),
    }
}
