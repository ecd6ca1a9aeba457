//! Command-line arguments for the ostree-like commands: init, commit, ls, show, checkout, summary.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::gvariant::MetaValue;
use super::{Checksum, CommitOptions, Repo, RepoMode, datetime, inspect, summary};

/// Arguments of `atomic-factory init`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory init --repo=repo\n  atomic-factory init --repo=repo --mode=archive"
)]
pub struct InitArgs {
    /// Path of the repository to create
    #[arg(long)]
    pub repo: PathBuf,
    /// Repository mode: archive-z2 (or its alias archive)
    #[arg(long, default_value = "archive-z2")]
    pub mode: String,
}

/// Arguments of `atomic-factory commit`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory commit --repo=repo -b demo/x86_64 --tree=dir=rootfs --subject='nightly'\n  atomic-factory commit --repo=repo -b demo/x86_64 --tree=dir=rootfs --owner-uid=0 --owner-gid=0 \\\n      --timestamp=@1704164645 --add-metadata-string=version=1.0"
)]
pub struct CommitArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Branch to commit to (moved after every object is on disk)
    #[arg(short = 'b', long)]
    pub branch: Option<String>,
    /// Create a commit without writing a ref
    #[arg(long)]
    pub orphan: bool,
    /// The tree to commit, as dir=PATH
    #[arg(long, value_name = "dir=PATH")]
    pub tree: Vec<String>,
    /// The directory to commit (same as --tree=dir=PATH)
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// One line subject
    #[arg(short = 's', long, default_value = "")]
    pub subject: String,
    /// Full description
    #[arg(short = 'm', long, default_value = "")]
    pub body: String,
    /// Commit timestamp: @SECONDS or YYYY-MM-DD[ HH:MM:SS][Z|+HH:MM] (default: now)
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Parent commit checksum, or "none" (default: the branch's current commit)
    #[arg(long)]
    pub parent: Option<String>,
    /// Add a KEY=VALUE string to the commit metadata (repeatable, kept in order)
    #[arg(long = "add-metadata-string", value_name = "KEY=VALUE")]
    pub add_metadata_string: Vec<String>,
    /// Set the owner uid of every file and directory
    #[arg(long)]
    pub owner_uid: Option<u32>,
    /// Set the owner gid of every file and directory
    #[arg(long)]
    pub owner_gid: Option<u32>,
    /// Do not import extended attributes
    #[arg(long)]
    pub no_xattrs: bool,
    /// Do not write ostree.ref-binding / ostree.collection-binding
    #[arg(long)]
    pub no_bindings: bool,
}

/// Arguments of `atomic-factory ls`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory ls --repo=repo demo/x86_64 /usr/bin\n  atomic-factory ls -R --repo=repo demo/x86_64"
)]
pub struct LsArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Recurse into directories
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Ref or commit checksum
    #[arg(value_name = "REF")]
    pub rev: String,
    /// Path inside the commit
    #[arg(value_name = "PATH", default_value = "/")]
    pub paths: Vec<String>,
}

/// Arguments of `atomic-factory show`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory show --repo=repo demo/x86_64")]
pub struct ShowArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Ref or commit checksum
    #[arg(value_name = "REF")]
    pub rev: String,
}

/// Arguments of `atomic-factory checkout`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  atomic-factory checkout --repo=repo demo/x86_64 /tmp/rootfs")]
pub struct CheckoutArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Ref or commit checksum
    #[arg(value_name = "REF")]
    pub rev: String,
    /// Destination directory (must not exist)
    #[arg(value_name = "DIR")]
    pub dest: PathBuf,
}

/// Arguments of `atomic-factory summary`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory summary -u --repo=repo\n  atomic-factory summary --view --repo=repo\n  atomic-factory summary -u --repo=repo --gpg-sign=0x1234ABCD --gpg-homedir=keys\n\nThe summary's last-modified time is the clock, or SOURCE_DATE_EPOCH when set."
)]
pub struct SummaryArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Regenerate the summary
    #[arg(short = 'u', long)]
    pub update: bool,
    /// Print the summary
    #[arg(short = 'v', long)]
    pub view: bool,
    /// Additional metadata KEY=VALUE; VALUE is 'string' (quoted), true or false
    #[arg(short = 'm', long = "add-metadata", value_name = "KEY=VALUE")]
    pub add_metadata: Vec<String>,
    /// Keys to sign the summary with (`--gpg-sign`); signing happens after `-u`, if given.
    #[command(flatten)]
    pub sign: GpgSignOpts,
}

/// `atomic-factory init`: creates the repository in the given mode.
pub fn init(args: InitArgs) -> Result<()> {
    let mode: RepoMode = args.mode.parse()?;
    Repo::create(&args.repo, mode)?;
    Ok(())
}

fn key_value(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("missing '=' in KEY=VALUE metadata '{s}'"),
    }
}

/// `atomic-factory commit`: commits one directory tree and prints the new commit's checksum.
/// Exactly one tree is accepted, and a branch is required unless `--orphan` is given.
pub fn commit(args: CommitArgs) -> Result<()> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for t in &args.tree {
        match t.split_once('=') {
            Some(("dir", p)) => dirs.push(PathBuf::from(p)),
            Some((kind, _)) => {
                bail!("unsupported tree type '{kind}' in --tree={t}: only dir=PATH is supported")
            }
            None => bail!("missing type in tree specification '{t}': use --tree=dir=PATH"),
        }
    }
    dirs.extend(args.path.clone());
    let dir = match dirs.as_slice() {
        [d] => d.clone(),
        [] => bail!("nothing to commit: give --tree=dir=PATH"),
        _ => bail!("only one tree can be committed at a time"),
    };
    if args.branch.is_none() && !args.orphan {
        bail!("a branch must be specified with --branch, or use --orphan");
    }
    let repo = Repo::open(&args.repo)?;
    let parent = match args.parent.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(p) => Some(Some(
            p.parse::<Checksum>()
                .with_context(|| format!("--parent={p}"))?,
        )),
    };
    let timestamp = args
        .timestamp
        .as_deref()
        .map(datetime::parse_timestamp)
        .transpose()?;
    let metadata = args
        .add_metadata_string
        .iter()
        .map(|s| key_value(s).map(|(k, v)| (k, MetaValue::Str(v))))
        .collect::<Result<_>>()?;
    let opts = CommitOptions {
        branch: if args.orphan {
            None
        } else {
            args.branch.clone()
        },
        subject: args.subject,
        body: args.body,
        timestamp,
        parent,
        metadata,
        owner_uid: args.owner_uid,
        owner_gid: args.owner_gid,
        no_xattrs: args.no_xattrs,
        no_bindings: args.no_bindings,
        progress: true,
    };
    let csum = super::commit_directory(&repo, &dir, &opts)?;
    println!("{csum}");
    Ok(())
}

/// `atomic-factory ls`: lists each given path inside the commit, like `ostree ls`.
pub fn ls(args: LsArgs) -> Result<()> {
    let repo = Repo::open(&args.repo)?;
    let commit = repo.resolve_rev(&args.rev)?;
    for p in &args.paths {
        for line in inspect::ls(&repo, &commit, p, args.recursive)? {
            println!("{line}");
        }
    }
    Ok(())
}

/// `atomic-factory show`: prints the commit like `ostree show`.
pub fn show(args: ShowArgs) -> Result<()> {
    let repo = Repo::open(&args.repo)?;
    let commit = repo.resolve_rev(&args.rev)?;
    print!("{}", inspect::show(&repo, &commit)?);
    Ok(())
}

/// `atomic-factory checkout`: writes the commit's tree into a new directory.
pub fn checkout(args: CheckoutArgs) -> Result<()> {
    let repo = Repo::open(&args.repo)?;
    let commit = repo.resolve_rev(&args.rev)?;
    inspect::checkout(&repo, &commit, &args.dest)
}

fn parse_summary_value(k: &str, v: &str) -> Result<MetaValue> {
    let t = v.trim();
    if t == "true" || t == "false" {
        return Ok(MetaValue::Bool(t == "true"));
    }
    for q in ['\'', '"'] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return Ok(MetaValue::Str(t[1..t.len() - 1].to_string()));
        }
    }
    bail!("--add-metadata={k}={v}: VALUE must be a quoted string ('text') or true/false")
}

fn be_u64(v: &MetaValue) -> Option<u64> {
    match v {
        MetaValue::U64(n) => Some(u64::from_be(*n)),
        MetaValue::U64Be(n) => Some(*n),
        _ => None,
    }
}

/// Renders a summary like `ostree summary --view`.
pub fn render_summary(s: &summary::Summary) -> String {
    let mut out = String::new();
    for r in &s.refs {
        out.push_str(&format!(
            "* {}\n    Latest Commit ({} bytes):\n      {}\n",
            r.name, r.commit_size, r.commit
        ));
        for (k, v) in &r.metadata {
            match k.as_str() {
                "ostree.commit.version" => out.push_str(&format!(
                    "    Version ({k}): {}\n",
                    v.as_str().unwrap_or("")
                )),
                "ostree.commit.timestamp" => out.push_str(&format!(
                    "    Timestamp ({k}): {}\n",
                    be_u64(v).map(datetime::format_iso).unwrap_or_default()
                )),
                _ => out.push_str(&format!("    {k}: {v}\n")),
            }
        }
        out.push('\n');
    }
    for (k, v) in &s.metadata {
        match k.as_str() {
            "ostree.summary.mode" => out.push_str(&format!(
                "Repository Mode ({k}): {}\n",
                v.as_str().unwrap_or("")
            )),
            "ostree.summary.last-modified" => out.push_str(&format!(
                "Last-Modified ({k}): {}\n",
                be_u64(v).map(datetime::format_iso).unwrap_or_default()
            )),
            "ostree.summary.tombstone-commits" => out.push_str(&format!(
                "Has Tombstone Commits ({k}): {}\n",
                if *v == MetaValue::Bool(true) {
                    "Yes"
                } else {
                    "No"
                }
            )),
            _ => out.push_str(&format!("{k}: {v}\n")),
        }
    }
    out
}

/// `atomic-factory summary`: regenerates (`-u`), signs (`--gpg-sign`) and/or prints (`--view`)
/// the summary, in that order; refuses to run with none of them.
pub fn summary(args: SummaryArgs) -> Result<()> {
    if !args.update && !args.view && args.sign.is_empty() {
        bail!("nothing to do: give -u/--update to regenerate the summary or --view to print it");
    }
    let repo = Repo::open(&args.repo)?;
    let signers = args.sign.signers()?;
    if args.update {
        let extra = args
            .add_metadata
            .iter()
            .map(|s| {
                let (k, v) = key_value(s)?;
                let val = parse_summary_value(&k, &v)?;
                Ok((k, val))
            })
            .collect::<Result<Vec<_>>>()?;
        repo.update_summary(&extra)?;
    }
    super::sign::sign_summary_with(&args.repo, &signers)?;
    if args.view {
        print!("{}", render_summary(&repo.read_summary()?));
    }
    Ok(())
}

// ---- Signing (issue #9): `gpg-sign`, `verify`; kept together here to ease merges. ----

/// `--gpg-sign=KEYID` plus the key source, for commands that sign what they write
/// (`summary -u`, `compose tree`).
#[derive(Debug, Clone, Default, Args)]
pub struct GpgSignOpts {
    /// Sign with this GPG key (fingerprint, key id or user id); repeatable
    #[arg(long = "gpg-sign", value_name = "KEYID")]
    pub gpg_sign: Vec<String>,
    /// Where the `--gpg-sign` keys are loaded from.
    #[command(flatten)]
    pub key: GpgKeyArgs,
}

impl GpgSignOpts {
    /// True when no `--gpg-sign` key was given, so nothing is to be signed.
    pub fn is_empty(&self) -> bool {
        self.gpg_sign.is_empty()
    }

    /// Loads every `--gpg-sign` key. Call this before the long work so a wrong key id
    /// fails at once, not after the compose or with the old summary.sig already gone.
    pub fn signers(&self) -> Result<Vec<super::gpg::Signer>> {
        self.gpg_sign.iter().map(|k| self.key.signer(k)).collect()
    }
}

/// Where the secret key comes from (shared by `gpg-sign`, `summary -u` and `compose tree`).
#[derive(Debug, Clone, Default, Args)]
pub struct GpgKeyArgs {
    /// GnuPG home directory holding the secret key (default: $GNUPGHOME or ~/.gnupg)
    #[arg(long, value_name = "DIR")]
    pub gpg_homedir: Option<PathBuf>,
    /// Armored secret key file (`gpg --export-secret-keys --armor`), instead of a GnuPG home
    #[arg(long, value_name = "FILE", conflicts_with = "gpg_homedir")]
    pub key_file: Option<PathBuf>,
    /// File whose first line is the passphrase of a protected secret key
    #[arg(long, value_name = "FILE")]
    pub gpg_passphrase_file: Option<PathBuf>,
}

impl GpgKeyArgs {
    /// Loads the secret key `keyid` (fingerprint, key id or user id) from the chosen source,
    /// unlocking it with the passphrase file if one was given.
    pub fn signer(&self, keyid: &str) -> anyhow::Result<super::gpg::Signer> {
        let passphrase = self
            .gpg_passphrase_file
            .as_deref()
            .map(super::gpg::Passphrase::from_file)
            .transpose()?;
        super::sign::KeySource::from_flags(self.gpg_homedir.as_deref(), self.key_file.as_deref())?
            .signer(keyid, passphrase.as_ref())
    }
}

/// Arguments of `atomic-factory gpg-sign`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory gpg-sign --repo=repo demo/x86_64 0x1234ABCD --gpg-homedir=keys\n  atomic-factory gpg-sign --repo=repo 3f1c…e2 builder@example.org --key-file=secret.asc\n  atomic-factory gpg-sign --repo=repo demo/x86_64 builder@example.org --gpg-homedir=keys --gpg-passphrase-file=/run/secrets/pass"
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
    /// Where the signing keys are loaded from.
    #[command(flatten)]
    pub key: GpgKeyArgs,
}

/// Arguments of `atomic-factory verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory verify --repo=repo demo/x86_64 --keyring=pubkey.gpg\n  atomic-factory verify --repo=repo --summary --keyring=RPM-GPG-KEY-demo.asc\n  atomic-factory verify --repo=repo demo/x86_64 --gpg-homedir=~/.gnupg"
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
    /// Public keyring: binary or armored (`gpg --export [--armor]`) or a GnuPG
    /// keybox (pubring.kbx); repeatable
    #[arg(long, required_unless_present = "gpg_homedir")]
    pub keyring: Vec<PathBuf>,
    /// Also trust every public key of this GnuPG home (its pubring.kbx or pubring.gpg)
    #[arg(long, value_name = "DIR")]
    pub gpg_homedir: Option<PathBuf>,
}

/// `atomic-factory gpg-sign`: signs the commit with each key, skipping keys that already
/// signed it.
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

/// `atomic-factory verify`: checks a commit's (or the summary's) signatures against the
/// given keyrings, prints each one, and fails unless a good signature is among them.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut keyring = super::gpg::Keyring::default();
    let mut paths = args.keyring.clone();
    if let Some(home) = &args.gpg_homedir {
        let found: Vec<PathBuf> = ["pubring.kbx", "pubring.gpg"]
            .iter()
            .map(|n| home.join(n))
            .filter(|p| p.is_file())
            .collect();
        if found.is_empty() {
            anyhow::bail!(
                "GnuPG home {} has no pubring.kbx or pubring.gpg",
                home.display()
            );
        }
        paths.extend(found);
    }
    for path in &paths {
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
