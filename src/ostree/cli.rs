//! Command-line arguments for the ostree-like commands: init, commit, ls, show, checkout, summary.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory init --repo=repo\n  atomic-factory init --repo=repo --mode=archive"
)]
pub struct InitArgs {
    /// Path of the repository to create
    #[arg(long)]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory commit --repo=repo -b demo/x86_64 --tree=dir=rootfs --subject='nightly'"
)]
pub struct CommitArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory ls --repo=repo demo/x86_64 /usr/bin")]
pub struct LsArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory show --repo=repo demo/x86_64")]
pub struct ShowArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory checkout --repo=repo demo/x86_64 /tmp/rootfs")]
pub struct CheckoutArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory summary -u --repo=repo\n  atomic-factory summary --view --repo=repo"
)]
pub struct SummaryArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
}

pub fn init(_args: InitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #2)")
}
pub fn commit(_args: CommitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #2)")
}
pub fn ls(_args: LsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #2)")
}
pub fn show(_args: ShowArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #2)")
}
pub fn checkout(_args: CheckoutArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #2)")
}
pub fn summary(_args: SummaryArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #2)")
}
