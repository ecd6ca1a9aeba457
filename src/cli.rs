//! The command line: the top-level command enum and its dispatch.
//!
//! Each stage defines its own argument structs in `<stage>/cli.rs`; this file only
//! lists the commands and routes them, so stages can grow flags without touching it.

use clap::{Parser, Subcommand};

use crate::{compose, image, kickstart, mirror, ostree, pipeline, vm};

/// Build ostree-based OS images: compose RPMs into an ostree repository, render a
/// kickstart, install it in QEMU, post-process the disk and boot-test it.
#[derive(Debug, Parser)]
#[command(
    name = "atomic-factory",
    version,
    propagate_version = true,
    after_help = "Examples:\n  atomic-factory build                      # build and boot-test the embedded demo image\n  atomic-factory build kickstarts/fedora-atomic-cloud/image.yaml\n  atomic-factory init --repo=repo\n  atomic-factory commit --repo=repo -b demo/x86_64 --tree=dir=rootfs\n  atomic-factory summary -u --repo=repo"
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each variant's doc comment is its `--help` line.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an ostree repository (like `ostree init`)
    Init(ostree::cli::InitArgs),
    /// Commit a directory tree to a branch (like `ostree commit`)
    Commit(ostree::cli::CommitArgs),
    /// List a path inside a commit (like `ostree ls`)
    Ls(ostree::cli::LsArgs),
    /// Show a commit (like `ostree show`)
    Show(ostree::cli::ShowArgs),
    /// Check out a commit into a new directory (like `ostree checkout`)
    Checkout(ostree::cli::CheckoutArgs),
    /// Write or show the repository summary (like `ostree summary`)
    Summary(ostree::cli::SummaryArgs),
    /// Generate, list, show and delete static deltas (like `ostree static-delta`)
    #[command(subcommand)]
    StaticDelta(ostree::delta::cli::StaticDeltaCommand),
    /// Delete old commits and unreachable objects, by options or a per-ref policy (like `ostree prune`)
    Prune(ostree::prune::cli::PruneArgs),
    /// Sign a commit with GPG (like `ostree gpg-sign`)
    GpgSign(ostree::cli::GpgSignArgs),
    /// Check a commit's or the summary's GPG signatures (like `ostree show --gpg-verify`)
    Verify(ostree::cli::VerifyArgs),
    /// Compose RPMs into an ostree commit (like `rpm-ostree compose`)
    #[command(subcommand)]
    Compose(compose::cli::ComposeCommand),
    /// Render and lint kickstarts
    #[command(subcommand)]
    Kickstart(kickstart::cli::KickstartCommand),
    /// Boot the installer in QEMU against the composed repository; leaves the installed disk
    Install(Box<vm::cli::InstallArgs>),
    /// Turn an installed disk into the published image: sparse, compressed, checksummed
    Postprocess(image::cli::PostprocessArgs),
    /// Boot images on a throwaway overlay and judge their console output
    BootTest(vm::cli::BootTestArgs),
    /// Boot an image, upgrade it to a newer commit inside the guest, reboot, roll back
    UpgradeTest(Box<vm::cli::UpgradeTestArgs>),
    /// Find repositories, emit metalinks and serve them (like MirrorManager)
    #[command(subcommand)]
    Mirror(mirror::cli::MirrorCommand),
    /// Run the whole pipeline for an image definition (the embedded demo without one)
    Build(pipeline::cli::BuildArgs),
}

/// Runs one command: hands its arguments to the stage that owns it.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => ostree::cli::init(args),
        Command::Commit(args) => ostree::cli::commit(args),
        Command::Ls(args) => ostree::cli::ls(args),
        Command::Show(args) => ostree::cli::show(args),
        Command::Checkout(args) => ostree::cli::checkout(args),
        Command::Summary(args) => ostree::cli::summary(args),
        Command::StaticDelta(cmd) => ostree::delta::cli::run(cmd),
        Command::Prune(args) => ostree::prune::cli::prune(args),
        Command::GpgSign(args) => ostree::cli::gpg_sign(args),
        Command::Verify(args) => ostree::cli::verify(args),
        Command::Compose(cmd) => compose::cli::run(cmd),
        Command::Kickstart(cmd) => kickstart::cli::run(cmd),
        Command::Install(args) => vm::cli::install(*args),
        Command::Postprocess(args) => image::cli::postprocess(args),
        Command::BootTest(args) => vm::cli::boot_test(args),
        Command::UpgradeTest(args) => vm::cli::upgrade_test(*args),
        Command::Mirror(cmd) => mirror::cli::run(cmd),
        Command::Build(args) => pipeline::cli::build(args),
    }
}

/// Log to stderr; `RUST_LOG` overrides the default level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // pgp warns about every trust packet of a local keyring (harmless; we drop them).
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pgp=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every subcommand's help carries at least one example.
    #[test]
    fn every_subcommand_has_examples() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_subcommands().next().is_none() {
                let help = cmd
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if !help.contains("Example") {
                    missing.push(path.clone());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "subcommands without examples: {missing:?}"
        );
    }
}
