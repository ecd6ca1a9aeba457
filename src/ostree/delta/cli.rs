//! `atomic-factory static-delta generate|list|show|delete` (like `ostree static-delta`).

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};

use super::{Compression, DeltaName, GenerateOptions};
use crate::ostree::Repo;

/// The subcommands of `atomic-factory static-delta`.
#[derive(Debug, Subcommand)]
pub enum StaticDeltaCommand {
    /// Generate a static delta (like `ostree static-delta generate`)
    Generate(GenerateArgs),
    /// List the static deltas of a repository
    List(RepoArg),
    /// Describe a static delta: endpoints, parts, fallbacks, opcodes
    Show(DeltaArgs),
    /// Remove a static delta
    Delete(DeltaArgs),
}

/// Arguments of `atomic-factory static-delta generate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory static-delta generate --repo=repo --to=demo/x86_64            # from its parent\n  atomic-factory static-delta generate --repo=repo --from=3f1c…e2 --to=demo/x86_64 --if-not-exists\n  atomic-factory static-delta generate --repo=repo --empty --to=demo/x86_64 --inline\n  atomic-factory static-delta generate --repo=repo --empty --to=demo/x86_64 --inline \\\n      --min-fallback-size=0 --filename=/tmp/demo.delta     # one self-contained file"
)]
pub struct GenerateArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Create the delta from this revision (default: the parent of --to)
    #[arg(long, value_name = "REV", conflicts_with = "empty")]
    pub from: Option<String>,
    /// Create a from-scratch delta (for clients with nothing)
    #[arg(long)]
    pub empty: bool,
    /// Create the delta to this revision (ref or checksum)
    #[arg(long, value_name = "REV")]
    pub to: String,
    /// Put the parts inside the superblock
    #[arg(long)]
    pub inline: bool,
    /// Fetch regular files larger than this many megabytes individually (0: never)
    #[arg(long, value_name = "MB", default_value_t = 4)]
    pub min_fallback_size: u64,
    /// Maximum size of a part in megabytes
    #[arg(long, value_name = "MB", default_value_t = 32)]
    pub max_chunk_size: u64,
    /// Modified files whose old and new sizes add up to more megabytes are sent whole
    /// (neither matched nor bsdiff'ed)
    #[arg(long, value_name = "MB", default_value_t = 128)]
    pub max_bsdiff_size: u64,
    /// Do not bsdiff modified files (exact-match copies are still used, as with ostree)
    #[arg(long)]
    pub disable_bsdiff: bool,
    /// Do not compress the parts (default: lzma, like ostree). ostree 2022.7 clients
    /// fail ("mmap: Invalid argument") on uncompressed part files over 16 KiB; inline
    /// parts are fine
    #[arg(long)]
    pub no_compression: bool,
    /// Only generate if the delta does not exist yet
    #[arg(short = 'n', long)]
    pub if_not_exists: bool,
    /// Write the superblock to this file (parts beside it) instead of the repository
    #[arg(long, value_name = "PATH")]
    pub filename: Option<PathBuf>,
}

/// Arguments of `atomic-factory static-delta list`: only the repository.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory static-delta list --repo=repo")]
pub struct RepoArg {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
}

/// Arguments of `static-delta show` and `static-delta delete`: a repository and one delta.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory static-delta show --repo=repo 3f1c…e2-9a0b…71\n  atomic-factory static-delta delete --repo=repo 9a0b…71"
)]
pub struct DeltaArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// FROM-TO or TO (for a from-scratch delta), as `static-delta list` prints it
    pub delta: String,
}

/// Runs one `static-delta` subcommand and prints its result.
pub fn run(cmd: StaticDeltaCommand) -> Result<()> {
    match cmd {
        StaticDeltaCommand::Generate(a) => generate(a),
        StaticDeltaCommand::List(a) => {
            let repo = Repo::open(&a.repo)?;
            let names = repo.list_static_deltas()?;
            if names.is_empty() {
                println!("(No static deltas)");
            }
            for n in names {
                println!("{}", n.id());
            }
            Ok(())
        }
        StaticDeltaCommand::Show(a) => {
            let repo = Repo::open(&a.repo)?;
            let name = DeltaName::parse(&a.delta)?;
            print!("{}", super::show(&repo, &name)?);
            Ok(())
        }
        StaticDeltaCommand::Delete(a) => {
            let repo = Repo::open(&a.repo)?;
            let name = DeltaName::parse(&a.delta)?;
            let _lock = repo.lock()?;
            repo.delete_static_delta(&name)
        }
    }
}

fn generate(a: GenerateArgs) -> Result<()> {
    let repo = Repo::open(&a.repo)?;
    let to = repo.resolve_rev(&a.to).context("--to")?;
    let from = if a.empty {
        None
    } else if let Some(f) = &a.from {
        Some(repo.resolve_rev(f).context("--from")?)
    } else {
        let c = repo.read_commit(&to)?;
        match c.parent {
            Some(p) => Some(p),
            None => bail!(
                "commit {to} has no parent: give --from=REV, or --empty for a from-scratch delta"
            ),
        }
    };
    let mut opts = GenerateOptions::new(from, to);
    opts.inline = a.inline;
    opts.min_fallback_size = a.min_fallback_size * 1_000_000;
    opts.max_chunk_size = a.max_chunk_size.max(1) * 1_000_000;
    opts.max_bsdiff_size = a.max_bsdiff_size * 1_000_000;
    opts.bsdiff = !a.disable_bsdiff;
    opts.if_not_exists = a.if_not_exists;
    opts.filename = a.filename;
    if a.no_compression {
        opts.compression = Compression::None;
    }
    let _lock = repo.lock_shared()?;
    let name = DeltaName { from, to };
    if !opts.if_not_exists {
        println!("Generating static delta:");
        println!(
            "  From: {}",
            from.map(|f| f.to_hex()).unwrap_or_else(|| "empty".into())
        );
        println!("  To:   {to}");
    }
    let r = super::generate(&repo, &opts)?;
    if r.existed {
        println!("Delta {} already exists.", name.id());
    } else {
        if opts.if_not_exists {
            println!("Generated static delta {}", name.id());
        }
        println!(
            "parts={} objects={} copied={} bsdiff={} fallbacks={} size={} uncompressed={}",
            r.parts, r.objects, r.copied, r.bsdiffs, r.fallbacks, r.part_bytes, r.part_ubytes
        );
    }
    Ok(())
}
