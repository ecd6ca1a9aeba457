//! Command-line arguments for `kickstart render` and `kickstart lint`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum KickstartCommand {
    /// Render an image's kickstart template
    Render(RenderArgs),
    /// Check a kickstart for mistakes that would only show up in the installer
    Lint(LintArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory kickstart render kickstarts/demo/image.yaml -o ks.cfg"
)]
pub struct RenderArgs {
    /// The image definition whose kickstart to render
    pub image: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory kickstart lint ks.cfg --version F41")]
pub struct LintArgs {
    /// The kickstart file to check
    pub kickstart: PathBuf,
}

pub fn run(cmd: KickstartCommand) -> anyhow::Result<()> {
    match cmd {
        KickstartCommand::Render(_) | KickstartCommand::Lint(_) => {
            anyhow::bail!("not implemented yet (issue #4)")
        }
    }
}
