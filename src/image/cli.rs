//! Command-line arguments for `postprocess`.

use std::path::PathBuf;

use clap::Args;

use super::{Compression, OutputFormat, PostprocessConfig};

/// Sparsify, compress, checksum and describe an installed disk, like
/// `qemu-img convert -c` plus virt-sparsify, in parallel on every core.
///
/// Writes the image in one of the formats Fedora's Cloud WG ships (qcow2, raw.xz, Azure's
/// fixed VHD, GCE's tar.gz, Vagrant boxes, streamOptimized VMDK, OVA), then adds it to CHECKSUM and productmd's
/// images.json in the output directory (one line/entry per image) and writes manifest.json.
/// With --gpg-sign, CHECKSUM.asc is its armored detached signature (`gpg --verify
/// CHECKSUM.asc CHECKSUM`); without it, a CHECKSUM.asc left from an earlier run is removed,
/// as it no longer matches. With SOURCE_DATE_EPOCH set, tar mtimes, the VHD timestamp and the file's mtime use it,
/// so the same disk gives the same bytes.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  atomic-factory postprocess disk.qcow2 -o image.qcow2
  atomic-factory postprocess disk.qcow2 -o image.qcow2 --compression zstd --discard-unused
  atomic-factory postprocess disk.raw -o image.raw.xz --format raw.xz
  atomic-factory postprocess disk.qcow2 -O vhdfixed.xz -o out/demo-1.x86_64.vhdfixed.xz
  atomic-factory postprocess disk.qcow2 -O gce -o out/demo-1.x86_64.tar.gz
  atomic-factory postprocess disk.qcow2 -O vmdk --vmdk-subformat monolithicSparse \\
      -o out/demo-1.x86_64.vmdk
  SOURCE_DATE_EPOCH=1700000000 atomic-factory postprocess disk.qcow2 \\
      -O vagrant-libvirt -o out/demo-1.x86_64.vagrant-libvirt.box
  atomic-factory postprocess disk.qcow2 -O raw.xz -o out/demo.raw.xz \\
      --gpg-sign builder@example.org --gpg-homedir keys   # also CHECKSUM.asc
  atomic-factory postprocess disk.qcow2 -o out/Fedora-Atomic.qcow2 \\
      --ostree-ref fedora/x86_64/atomic --ostree-commit 3f2a... --os-version 41.1 \\
      --kickstart atomic.ks")]
pub struct PostprocessArgs {
    /// The installed disk (qcow2 with any backing chain, or raw)
    pub input: PathBuf,
    /// Where to write the image
    #[arg(short, long)]
    pub output: PathBuf,
    /// Input format; by default probed (a .qcow2 name must be qcow2)
    #[arg(short = 'f', long, value_parser = ["qcow2", "raw"])]
    pub input_format: Option<String>,
    /// Output format: qcow2, raw, raw.xz, vhd (fixed, MiB-aligned), vhdfixed.xz, gce
    /// (disk.raw in a sparse GNU tar.gz), vagrant-libvirt (box with a qcow2), vmdk
    /// (streamOptimized), vagrant-virtualbox (box: OVF + VMDK), ova (vSphere)
    #[arg(short = 'O', long, value_enum, default_value = "qcow2")]
    pub format: OutputFormat,
    /// VMDK subformat of vmdk output; vagrant-virtualbox and ova always hold
    /// streamOptimized
    #[arg(long, value_enum, default_value = "streamOptimized")]
    pub vmdk_subformat: super::vmdk::Subformat,
    /// Cluster compression for qcow2 output (and the qcow2 in a vagrant-libvirt box)
    #[arg(short, long, value_enum, default_value_t = Compression::POSTPROCESS_DEFAULT)]
    pub compression: Compression,
    /// Drop blocks the filesystem marks free (ext2/3/4 on MBR, GPT or a bare disk)
    #[arg(long)]
    pub discard_unused: bool,
    /// CHECKSUM file to write [default: CHECKSUM next to the output]
    #[arg(long)]
    pub checksum: Option<PathBuf>,
    /// manifest.json to write [default: manifest.json next to the output]
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// productmd images.json to add the image to [default: images.json next to the output]
    #[arg(long)]
    pub images_json: Option<PathBuf>,
    /// productmd subvariant of the image [default: the output name without format and arch]
    #[arg(long)]
    pub subvariant: Option<String>,
    /// The ostree ref the image was installed from (recorded in the manifest)
    #[arg(long)]
    pub ostree_ref: Option<String>,
    /// The ostree commit checksum (recorded in the manifest)
    #[arg(long)]
    pub ostree_commit: Option<String>,
    /// The OS version (recorded in the manifest)
    #[arg(long)]
    pub os_version: Option<String>,
    /// The kickstart used to install (its SHA-256 goes into the manifest)
    #[arg(long)]
    pub kickstart: Option<PathBuf>,
    /// No progress output
    #[arg(short, long)]
    pub quiet: bool,
    /// `--gpg-sign KEYID` writes CHECKSUM.asc, an armored detached signature of CHECKSUM
    /// (one key at most).
    #[command(flatten)]
    pub sign: crate::ostree::cli::GpgSignOpts,
}

impl From<PostprocessArgs> for PostprocessConfig {
    fn from(a: PostprocessArgs) -> PostprocessConfig {
        PostprocessConfig {
            input: a.input,
            input_format: a.input_format,
            output: a.output,
            format: a.format,
            compression: a.compression,
            vmdk_subformat: a.vmdk_subformat,
            discard_unused: a.discard_unused,
            checksum: a.checksum,
            manifest: a.manifest,
            images_json: a.images_json,
            subvariant: a.subvariant,
            ostree_ref: a.ostree_ref,
            ostree_commit: a.ostree_commit,
            version: a.os_version,
            kickstart: a.kickstart,
            progress: crate::progress::Reporter::new(a.quiet),
            // Loaded by `postprocess` below, where a wrong key can be reported.
            signer: None,
        }
    }
}

/// Runs `postprocess` and prints what it wrote (unless `--quiet`).
pub fn postprocess(args: PostprocessArgs) -> anyhow::Result<()> {
    let quiet = args.quiet;
    let mut signers = args.sign.signers()?;
    if signers.len() > 1 {
        anyhow::bail!("postprocess signs CHECKSUM with one key; give --gpg-sign once");
    }
    let signer = signers.pop();
    let mut cfg: PostprocessConfig = args.into();
    cfg.signer = signer;
    let out = super::postprocess(&cfg)?;
    if !quiet {
        eprintln!(
            "wrote {} ({} MiB of {} MiB virtual; {} clusters compressed, {} plain, {} zero), {}, {}",
            out.image.display(),
            out.file_size >> 20,
            out.virtual_size >> 20,
            out.stats.compressed,
            out.stats.plain,
            out.stats.zero,
            out.checksum.display(),
            out.manifest.display()
        );
    }
    Ok(())
}
