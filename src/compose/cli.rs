//! Command-line arguments for `compose`.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::{ComposeOptions, compose_tree};

/// The `compose` subcommands.
#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Compose a treefile's packages into a commit (like `rpm-ostree compose tree`)
    Tree(ComposeTreeArgs),
}

/// Arguments of `compose tree`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  atomic-factory compose tree --repo=repo kickstarts/demo/treefile.yaml
  SOURCE_DATE_EPOCH=1700000000 atomic-factory compose tree --repo=repo \\
      --write-commitid-to=commitid --add-metadata-string=build.id=42 treefile.yaml
  atomic-factory compose tree --repo=repo --force-nocache treefile.yaml
  atomic-factory compose tree --repo=repo --gpg-sign=0x1234ABCD --gpg-homedir=keys treefile.yaml

With unchanged inputs (same rpmostree.inputhash as the ref's commit) no commit is made.
Scriptlets are not run; each is listed in the output and in the commit metadata
(atomic-factory.skipped-scriptlets). The commit timestamp is SOURCE_DATE_EPOCH when set.")]
pub struct ComposeTreeArgs {
    /// Path of the archive repository to commit into
    #[arg(long)]
    pub repo: PathBuf,
    /// Commit even if the inputs did not change
    #[arg(long)]
    pub force_nocache: bool,
    /// Write the new commit checksum to this file (only when a commit is made)
    #[arg(long, value_name = "FILE")]
    pub write_commitid_to: Option<PathBuf>,
    /// Create or update this file's mtime when a commit is made
    #[arg(long, value_name = "FILE")]
    pub touch_if_changed: Option<PathBuf>,
    /// Add a string to the commit metadata (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub add_metadata_string: Vec<String>,
    /// Print only errors
    #[arg(long, short)]
    pub quiet: bool,
    /// `--gpg-sign`/`--gpg-homedir`: sign the new commit.
    #[command(flatten)]
    pub sign: crate::ostree::cli::GpgSignOpts,
    /// The treefile (YAML or JSON)
    pub treefile: PathBuf,
}

/// Runs a `compose` subcommand.
pub fn run(cmd: ComposeCommand) -> anyhow::Result<()> {
    match cmd {
        ComposeCommand::Tree(args) => tree(args),
    }
}

fn tree(args: ComposeTreeArgs) -> anyhow::Result<()> {
    let mut meta = Vec::new();
    for kv in &args.add_metadata_string {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--add-metadata-string {kv:?}: expected KEY=VALUE");
        };
        meta.push((k.to_string(), v.to_string()));
    }
    let opts = ComposeOptions {
        force_nocache: args.force_nocache,
        write_commitid_to: args.write_commitid_to,
        touch_if_changed: args.touch_if_changed,
        add_metadata_string: meta,
        source_date_epoch: None,
        progress: crate::progress::Reporter::new(args.quiet),
        add_files: Vec::new(),
    };
    let signers = args.sign.signers()?;
    let out = compose_tree(&args.repo, &args.treefile, &opts)?;
    // Also when nothing changed: an unsigned previous commit gets signed (a no-op if
    // this key already signed it).
    crate::ostree::sign::sign_commit_with(&args.repo, &out.commit, &signers)?;
    if !args.quiet && out.changed {
        for s in &out.skipped_scriptlets {
            eprintln!("scriptlet not run: {s}");
        }
        for n in &out.notes {
            eprintln!("note: {n}");
        }
    }
    println!("{}", out.commit);
    Ok(())
}
