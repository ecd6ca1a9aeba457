//! Command-line arguments for `install` and `boot-test`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory install --ks ks.cfg --repo repo --ref demo/x86_64 --kernel vmlinuz --initrd initrd.img -o disk.qcow2"
)]
pub struct InstallArgs {
    /// The rendered kickstart
    #[arg(long)]
    pub ks: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory boot-test image.qcow2 --junit report.xml")]
pub struct BootTestArgs {
    /// Images to boot
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn install(_args: InstallArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #5)")
}

pub fn boot_test(_args: BootTestArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #7)")
}
