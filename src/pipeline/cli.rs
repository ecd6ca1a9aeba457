//! Command-line arguments for `build`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory build\n  atomic-factory build kickstarts/fedora-atomic-cloud/image.yaml --until install"
)]
pub struct BuildArgs {
    /// The image definition; the embedded demo image when absent
    pub image: Option<PathBuf>,
}

pub fn build(_args: BuildArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #7)")
}
