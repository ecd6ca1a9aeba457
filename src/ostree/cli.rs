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

// ---- Signing (issue #9): `gpg-sign`, `verify`; kept together here to ease merges. ----

/// Where the secret key comes from (shared by `gpg-sign`, `summary -u` and `compose tree`).
#[derive(Debug, Clone, Default, Args)]
pub struct GpgKeyArgs {
    /// GnuPG home directory holding the secret key (default: $GNUPGHOME or ~/.gnupg)
    #[arg(long, value_name = "DIR")]
    pub gpg_homedir: Option<PathBuf>,
    /// Armored secret key file (`gpg --export-secret-keys --armor`), instead of a GnuPG home
    #[arg(long, value_name = "FILE", conflicts_with = "gpg_homedir")]
    pub key_file: Option<PathBuf>,
}

impl GpgKeyArgs {
    pub fn signer(&self, keyid: &str) -> anyhow::Result<super::gpg::Signer> {
        super::sign::KeySource::from_flags(self.gpg_homedir.as_deref(), self.key_file.as_deref())?
            .signer(keyid)
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory gpg-sign --repo=repo demo/x86_64 0x1234ABCD --gpg-homedir=keys\n  atomic-factory gpg-sign --repo=repo 3f1c…e2 builder@example.org --key-file=secret.asc"
)]
pub struct GpgSignArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Commit checksum or ref to sign
    pub commit: String,
    /// Key ids (fingerprint, long/short id or user id) to sign with
    #[arg(required = true)]
    pub keyids: Vec<String>,
    #[command(flatten)]
    pub key: GpgKeyArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory verify --repo=repo demo/x86_64 --keyring=pubkey.gpg\n  atomic-factory verify --repo=repo --summary --keyring=RPM-GPG-KEY-demo.asc"
)]
pub struct VerifyArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Commit checksum or ref to verify (not with --summary)
    #[arg(required_unless_present = "summary")]
    pub rev: Option<String>,
    /// Verify summary.sig against summary instead of a commit
    #[arg(long, conflicts_with = "rev")]
    pub summary: bool,
    /// Public keyring, binary or armored (`gpg --export [--armor]`); repeatable
    #[arg(long, required = true)]
    pub keyring: Vec<PathBuf>,
}

pub fn gpg_sign(args: GpgSignArgs) -> anyhow::Result<()> {
    let commit = super::sign::resolve_commit(&args.repo, &args.commit)?;
    for keyid in &args.keyids {
        let signer = args.key.signer(keyid)?;
        if super::sign::gpg_sign_commit(&args.repo, &commit, &signer)? {
            println!("Signed {commit} with key {}", signer.signing_fingerprint());
        } else {
            println!(
                "{commit} is already signed with key {}",
                signer.signing_fingerprint()
            );
        }
    }
    Ok(())
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut keyring = super::gpg::Keyring::default();
    for path in &args.keyring {
        keyring.extend(super::gpg::Keyring::load(path)?);
    }
    let (what, checks) = if args.summary {
        let what = format!("summary of {}", args.repo.display());
        (what, super::sign::verify_summary(&args.repo, &keyring)?)
    } else {
        let rev = args.rev.as_deref().context("a commit or ref is required")?;
        let commit = super::sign::resolve_commit(&args.repo, rev)?;
        let checks = super::sign::verify_commit(&args.repo, &commit, &keyring)?;
        (format!("commit {commit}"), checks)
    };
    println!("Found {} signature(s) on {what}:", checks.len());
    for c in &checks {
        println!();
        print!("{}", c.describe());
    }
    super::sign::require_good(&checks, &what)
}
