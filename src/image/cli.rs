//! Command-line arguments for `postprocess`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory postprocess disk.qcow2 -o image.qcow2 --compression zstd"
)]
pub struct PostprocessArgs {
    /// The installed disk (qcow2 or raw)
    pub input: PathBuf,
    /// Where to write the image
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn postprocess(_args: PostprocessArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #6)")
}
