//! Disk images: read qcow2/raw, sparsify, write compressed qcow2, checksums and manifest.
//!
//! The entry point is [`postprocess`]: installed disk in, published image plus `CHECKSUM`
//! and `manifest.json` out. Files: `qcow2_read`/`raw_read`/`backing` (input),
//! `discard` (filesystem free space), `convert` (the sparsify + compress loop),
//! `compress`, `qcow2_write`/`raw_write`/`vhd`/`gce`/`vmdk`/`vagrant`/`ovf` (output;
//! `package` is the tar of boxes and OVAs), `checksum`,
//! `manifest`, `images_json` (productmd).

pub mod backing;
pub mod checksum;
pub mod cli;
pub mod compress;
pub mod convert;
pub mod discard;
pub mod gce;
pub mod images_json;
pub mod manifest;
pub mod ovf;
pub mod package;
pub mod qcow2_read;
pub mod qcow2_write;
pub mod raw_read;
pub mod raw_write;
pub mod source;
pub mod vagrant;
pub mod vhd;
pub mod vmdk;
pub mod xz;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub use compress::Codec;
pub use convert::Stats;

/// The published file's format. The value names are the ones `--format` and
/// `postprocess.formats` take.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum OutputFormat {
    /// A qcow2 image, clusters compressed by `--compression`.
    #[value(name = "qcow2")]
    #[serde(rename = "qcow2")]
    Qcow2,
    /// A sparse raw disk.
    #[value(name = "raw")]
    #[serde(rename = "raw")]
    Raw,
    /// A raw image compressed with xz, as cloud providers that take raw disks want it.
    #[value(name = "raw.xz")]
    #[serde(rename = "raw.xz")]
    RawXz,
    /// A fixed VHD, sized to whole MiB (Azure).
    #[value(name = "vhd")]
    #[serde(rename = "vhd")]
    Vhd,
    /// A fixed VHD compressed with xz: Fedora's Azure image.
    #[value(name = "vhdfixed.xz")]
    #[serde(rename = "vhdfixed.xz")]
    VhdfixedXz,
    /// `disk.raw` as a sparse entry in a gzip-compressed GNU tar (Google Compute Engine).
    #[value(name = "gce")]
    #[serde(rename = "gce")]
    Gce,
    /// A Vagrant box for the libvirt provider (qcow2 inside).
    #[value(name = "vagrant-libvirt")]
    #[serde(rename = "vagrant-libvirt")]
    VagrantLibvirt,
    /// A streamOptimized VMDK (VMware, VirtualBox, OVF).
    #[value(name = "vmdk")]
    #[serde(rename = "vmdk")]
    Vmdk,
    /// A Vagrant box for the VirtualBox provider (OVF + streamOptimized VMDK).
    #[value(name = "vagrant-virtualbox")]
    #[serde(rename = "vagrant-virtualbox")]
    VagrantVirtualbox,
    /// An OVA for vSphere: OVF descriptor, manifest and streamOptimized VMDK in a tar.
    #[value(name = "ova")]
    #[serde(rename = "ova")]
    Ova,
}

impl OutputFormat {
    /// The name `--format` and `postprocess.formats` take.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Qcow2 => "qcow2",
            OutputFormat::Raw => "raw",
            OutputFormat::RawXz => "raw.xz",
            OutputFormat::Vhd => "vhd",
            OutputFormat::VhdfixedXz => "vhdfixed.xz",
            OutputFormat::Gce => "gce",
            OutputFormat::VagrantLibvirt => "vagrant-libvirt",
            OutputFormat::Vmdk => "vmdk",
            OutputFormat::VagrantVirtualbox => "vagrant-virtualbox",
            OutputFormat::Ova => "ova",
        }
    }

    /// The file name suffix Fedora uses (`<name>-<version>.<arch>.<suffix>`); it is also
    /// productmd's `format`.
    pub fn suffix(self) -> &'static str {
        match self {
            OutputFormat::Gce => "tar.gz",
            OutputFormat::VagrantLibvirt => "vagrant-libvirt.box",
            OutputFormat::VagrantVirtualbox => "vagrant-virtualbox.box",
            OutputFormat::Ova => "vsphere.ova",
            other => other.name(),
        }
    }

    /// productmd's image `type` for this format (`IMAGE_TYPE_FORMAT_MAPPING`).
    pub fn productmd_type(self) -> &'static str {
        match self {
            OutputFormat::Qcow2 => "qcow2",
            OutputFormat::Raw => "raw",
            OutputFormat::RawXz => "raw-xz",
            OutputFormat::Vhd => "vpc",
            OutputFormat::VhdfixedXz => "vhd-compressed",
            OutputFormat::Gce => "tar-gz",
            OutputFormat::VagrantLibvirt => "vagrant-libvirt",
            OutputFormat::Vmdk => "vmdk",
            OutputFormat::VagrantVirtualbox => "vagrant-virtualbox",
            OutputFormat::Ova => "vsphere-ova",
        }
    }

    /// Whether the output holds qcow2 clusters that `--compression` applies to.
    pub fn has_qcow2(self) -> bool {
        matches!(self, OutputFormat::Qcow2 | OutputFormat::VagrantLibvirt)
    }
}

/// The time recorded in outputs (tar mtimes, the VHD timestamp, images.json's compose date):
/// `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else `None`.
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map(Some).with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?}: expected whole seconds since 1970 (e.g. 1700000000)")
        }),
        Err(_) => Ok(None),
    }
}

/// Compression of qcow2 clusters: the names `postprocess --compression` and the image
/// definition's `postprocess.compression` take.
///
/// There is no single `Default`: the command and `build` default differently, on purpose
/// (the two constants below).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Deflate, readable by any QEMU.
    Zlib,
    /// Zstandard; needs QEMU 5.1 or later.
    Zstd,
    /// Clusters stored uncompressed.
    None,
}

impl Compression {
    /// `postprocess`'s default: zlib, as `qemu-img convert -c` writes it, so the command is
    /// a drop-in for it and its images open in any QEMU (zstd clusters need QEMU 5.1 or
    /// later).
    pub const POSTPROCESS_DEFAULT: Compression = Compression::Zlib;

    /// `build`'s default: zstd (level 3, as QEMU writes it), faster than zlib level 6 both to
    /// compress and to decompress (boot-test boots the image), for the current QEMUs that
    /// run what the factory builds.
    pub const BUILD_DEFAULT: Compression = Compression::Zstd;

    /// The cluster codec, None for uncompressed.
    pub fn codec(self) -> Option<Codec> {
        match self {
            Compression::Zlib => Some(Codec::Zlib),
            Compression::Zstd => Some(Codec::Zstd),
            Compression::None => None,
        }
    }
}

/// Everything `postprocess` needs; built from the command line or by the pipeline.
#[derive(Debug, Clone)]
pub struct PostprocessConfig {
    /// The installed disk.
    pub input: PathBuf,
    /// `qcow2` or `raw`; `None` probes (a `.qcow2` name must be qcow2).
    pub input_format: Option<String>,
    /// Where the image is written.
    pub output: PathBuf,
    /// The published file's format.
    pub format: OutputFormat,
    /// Cluster compression of qcow2 output (also the qcow2 in a vagrant-libvirt box).
    pub compression: Compression,
    /// The subformat of `vmdk` output (packages always hold streamOptimized).
    pub vmdk_subformat: vmdk::Subformat,
    /// Drop blocks the filesystems mark free (ext2/3/4 on MBR, GPT or a bare disk).
    pub discard_unused: bool,
    /// Defaults to `CHECKSUM` next to the output.
    pub checksum: Option<PathBuf>,
    /// Defaults to `manifest.json` next to the output.
    pub manifest: Option<PathBuf>,
    /// productmd `images.json` to add the image to; defaults to `images.json` next to the
    /// output.
    pub images_json: Option<PathBuf>,
    /// productmd subvariant (and compose name); defaults to the output's file name without
    /// its format suffix and arch.
    pub subvariant: Option<String>,
    /// The ostree ref the disk was installed from, for the manifest.
    pub ostree_ref: Option<String>,
    /// The ostree commit the disk was installed from, for the manifest.
    pub ostree_commit: Option<String>,
    /// The OS version, for the manifest.
    pub version: Option<String>,
    /// The kickstart used for the install; its SHA-256 goes into the manifest.
    pub kickstart: Option<PathBuf>,
    /// Where progress goes (stderr by default; the pipeline passes its own).
    pub progress: crate::progress::Reporter,
    /// Signs CHECKSUM (`CHECKSUM.asc`, armored, detached); without it a stale signature is
    /// removed.
    pub signer: Option<crate::ostree::gpg::Signer>,
}

impl PostprocessConfig {
    /// A config with `postprocess`'s defaults: qcow2, zlib, no discard, no provenance.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> PostprocessConfig {
        PostprocessConfig {
            input: input.into(),
            input_format: None,
            output: output.into(),
            format: OutputFormat::Qcow2,
            compression: Compression::POSTPROCESS_DEFAULT,
            vmdk_subformat: vmdk::Subformat::StreamOptimized,
            discard_unused: false,
            checksum: None,
            manifest: None,
            images_json: None,
            subvariant: None,
            ostree_ref: None,
            ostree_commit: None,
            version: None,
            kickstart: None,
            progress: crate::progress::Reporter::default(),
            signer: None,
        }
    }
}

/// What `postprocess` produced.
#[derive(Debug, Clone)]
pub struct PostprocessOutcome {
    /// The written image.
    pub image: PathBuf,
    /// The CHECKSUM file the image was added to.
    pub checksum: PathBuf,
    /// The written manifest.json.
    pub manifest: PathBuf,
    /// The images.json the image was added to.
    pub images_json: PathBuf,
    /// The disk's size as the guest sees it, in bytes.
    pub virtual_size: u64,
    /// The image file's size in bytes.
    pub file_size: u64,
    /// The image file's SHA-256, hex.
    pub sha256: String,
    /// What the conversion loop did with the clusters.
    pub stats: Stats,
    /// Bytes marked free by the filesystems (with `discard_unused`).
    pub discarded_bytes: u64,
}

/// The architecture images are built for (the installer and QEMU runner are x86_64 only).
pub const ARCH: &str = "x86_64";
/// The productmd variant images are listed under, as Fedora lists its cloud images.
pub const VARIANT: &str = "Cloud";

/// The file name without the format suffix and a trailing `.<arch>`:
/// `demo-1.x86_64.vhdfixed.xz` gives `demo-1`.
fn default_subvariant(name: &str, format: OutputFormat) -> String {
    let stem = name
        .strip_suffix(format.suffix())
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(name);
    stem.strip_suffix(&format!(".{ARCH}"))
        .unwrap_or(stem)
        .to_owned()
}

/// `path` relative to the directory holding `index` when it is inside it, else absolute.
fn relative_to(path: &std::path::Path, index: &std::path::Path) -> String {
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let file = abs(path);
    let base = abs(index);
    let base = base.parent().unwrap_or(std::path::Path::new("/"));
    file.strip_prefix(base)
        .unwrap_or(&file)
        .to_string_lossy()
        .into_owned()
}

/// Turns an installed disk into the published image, then writes CHECKSUM and manifest.json.
///
/// The image is written to a temporary file in the output directory, synced and renamed, so a
/// failure (corrupt input, full disk) leaves no output file behind.
pub fn postprocess(cfg: &PostprocessConfig) -> Result<PostprocessOutcome> {
    let name = cfg
        .output
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!(
                "output path {} has no UTF-8 file name",
                cfg.output.display()
            )
        })?
        .to_owned();
    let dir = match cfg.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!("output directory {} does not exist", dir.display());
    }
    if !cfg.format.has_qcow2()
        && cfg.compression != Compression::Zlib
        && cfg.compression != Compression::None
    {
        bail!(
            "--compression applies to qcow2 and vagrant-libvirt only; {} output is not cluster-compressed",
            cfg.format.name()
        );
    }
    if cfg.vmdk_subformat != vmdk::Subformat::StreamOptimized && cfg.format != OutputFormat::Vmdk {
        bail!(
            "--vmdk-subformat {} applies to vmdk output only; {} always holds a streamOptimized VMDK",
            cfg.vmdk_subformat.name(),
            cfg.format.name()
        );
    }
    let epoch = source_date_epoch()?;
    let kickstart_sha256 = match &cfg.kickstart {
        Some(k) => Some(
            checksum::sha256_file(k)
                .with_context(|| format!("hashing kickstart {}", k.display()))?,
        ),
        None => None,
    };

    let src = backing::open_input(&cfg.input, cfg.input_format.as_deref())
        .with_context(|| format!("reading input image {}", cfg.input.display()))?;
    let size = src.virtual_size();
    let free = if cfg.discard_unused {
        discard::free_ranges(&*src)
            .with_context(|| format!("finding free blocks in {}", cfg.input.display()))?
    } else {
        Vec::new()
    };
    let discarded_bytes = free.iter().map(|(s, e)| e - s).sum();

    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let file = tmp
        .as_file()
        .try_clone()
        .context("opening the temporary output")?;
    // GCE reads the disk twice (map, then data).
    let passes = if cfg.format == OutputFormat::Gce {
        2
    } else {
        1
    };
    let progress = cfg
        .progress
        .task("postprocess", size * passes, crate::progress::Unit::Bytes);
    let started = std::time::Instant::now();
    let what = || format!("writing {}", cfg.output.display());
    let mtime = epoch.unwrap_or(0);
    let (stats, file_size) = match cfg.format {
        OutputFormat::Qcow2 => {
            let codec = cfg.compression.codec();
            let mut w = qcow2_write::Qcow2Writer::new(file, size, codec).with_context(what)?;
            let stats = convert::run(&*src, &free, codec, &mut w, &progress).with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
        OutputFormat::Raw => {
            let mut w = raw_write::RawSink { file, size };
            let stats = convert::run(&*src, &free, None, &mut w, &progress).with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
        OutputFormat::RawXz => {
            let mut w = xz::XzSink::new(file, size).with_context(what)?;
            let stats = convert::run(&*src, &free, None, &mut w, &progress).with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
        OutputFormat::Vhd | OutputFormat::VhdfixedXz => {
            if size > vhd::MAX_SIZE {
                bail!(
                    "{} is {size} bytes; a VHD holds at most {} bytes",
                    cfg.input.display(),
                    vhd::MAX_SIZE
                );
            }
            let len = vhd::vhd_size(size);
            if cfg.format == OutputFormat::Vhd {
                let mut w = vhd::Digesting::new(raw_write::RawSink { file, size });
                let stats =
                    convert::run(&*src, &free, None, &mut w, &progress).with_context(what)?;
                let (w, id) = w.into_parts();
                let footer = vhd::footer(len, mtime, &id);
                (stats, w.finish_padded(len, &footer).with_context(what)?.1)
            } else {
                let mut w = vhd::Digesting::new(xz::XzSink::new(file, size).with_context(what)?);
                let stats =
                    convert::run(&*src, &free, None, &mut w, &progress).with_context(what)?;
                let (w, id) = w.into_parts();
                let footer = vhd::footer(len, mtime, &id);
                (stats, w.finish_padded(len, &footer).with_context(what)?.1)
            }
        }
        OutputFormat::Gce => {
            let (stats, _, len) =
                gce::write(&*src, &free, file, mtime, &progress).with_context(what)?;
            (stats, len)
        }
        OutputFormat::Vmdk if cfg.vmdk_subformat == vmdk::Subformat::MonolithicSparse => {
            let mut w = vmdk::SparseWriter::new(file, size, &name, mtime).with_context(what)?;
            let stats = convert::run(&*src, &free, None, &mut w, &progress).with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
        OutputFormat::Vmdk => {
            let mut w = vmdk::VmdkWriter::new(file, size, &name, mtime).with_context(what)?;
            let stats = convert::run(&*src, &free, Some(Codec::ZlibStream), &mut w, &progress)
                .with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
        OutputFormat::VagrantVirtualbox => {
            let subvariant = cfg
                .subvariant
                .clone()
                .unwrap_or_else(|| default_subvariant(&name, cfg.format));
            let (stats, _, len) =
                vagrant::write_virtualbox(&*src, &free, file, &dir, &subvariant, mtime, &progress)
                    .with_context(what)?;
            (stats, len)
        }
        OutputFormat::Ova => {
            let stem = default_subvariant(&name, cfg.format);
            let (stats, _, len) = ovf::write_ova(&*src, &free, file, &dir, &stem, mtime, &progress)
                .with_context(what)?;
            (stats, len)
        }
        OutputFormat::VagrantLibvirt => {
            let codec = cfg.compression.codec();
            let (stats, _, len) =
                vagrant::write_libvirt(&*src, &free, codec, file, &dir, mtime, &progress)
                    .with_context(what)?;
            (stats, len)
        }
    };
    progress.finish();
    tracing::info!(
        "image written and synced in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting permissions on {}", tmp.path().display()))?;
    if let Some(epoch) = epoch {
        // The file's mtime is what images.json records: pin it too.
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
        tmp.as_file()
            .set_modified(when)
            .with_context(|| format!("setting the mtime of {}", tmp.path().display()))?;
    }
    tmp.persist(&cfg.output)
        .with_context(|| format!("renaming the finished image to {}", cfg.output.display()))?;
    crate::fsutil::sync_dir(&dir)?;

    let hashing = std::time::Instant::now();
    let sha256 = checksum::sha256_file(&cfg.output)?;
    tracing::info!("sha256 in {:.2} s", hashing.elapsed().as_secs_f64());
    let checksum_path = cfg.checksum.clone().unwrap_or_else(|| dir.join("CHECKSUM"));
    let existing = match std::fs::read_to_string(&checksum_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", checksum_path.display())),
    };
    checksum::write_checksum(
        &checksum_path,
        &checksum::merge_checksum_text(&existing, &name, file_size, &sha256),
        cfg.signer.as_ref(),
    )?;
    let manifest = manifest::Manifest {
        name: name.clone(),
        format: cfg.format.name().to_owned(),
        compression: cfg
            .format
            .has_qcow2()
            .then(|| format!("{:?}", cfg.compression).to_lowercase()),
        virtual_size: size,
        file_size,
        sha256: sha256.clone(),
        ostree_ref: cfg.ostree_ref.clone(),
        ostree_commit: cfg.ostree_commit.clone(),
        version: cfg.version.clone(),
        kickstart_sha256,
        tool: "atomic-factory".to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let manifest_path = cfg
        .manifest
        .clone()
        .unwrap_or_else(|| dir.join("manifest.json"));
    let mut json = serde_json::to_vec_pretty(&manifest).context("serialising the manifest")?;
    json.push(b'\n');
    crate::fsutil::write_atomic(&manifest_path, &json)?;

    let images_json_path = cfg
        .images_json
        .clone()
        .unwrap_or_else(|| dir.join("images.json"));
    let meta = std::fs::metadata(&cfg.output)
        .with_context(|| format!("reading the mtime of {}", cfg.output.display()))?;
    let file_mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let subvariant = cfg
        .subvariant
        .clone()
        .unwrap_or_else(|| default_subvariant(&name, cfg.format));
    let version = cfg.version.clone().unwrap_or_else(|| "0".to_owned());
    let compose = images_json::ComposeInfo::new(&subvariant, &version, epoch.unwrap_or(file_mtime));
    let entry = images_json::ImageEntry {
        path: relative_to(&cfg.output, &images_json_path),
        mtime: file_mtime,
        size: file_size,
        sha256: sha256.clone(),
        image_type: cfg.format.productmd_type(),
        format: cfg.format.suffix(),
        arch: ARCH.to_owned(),
        subvariant,
        // Disk images boot from their own bootloader; productmd's `bootable` is about
        // installer media (El Torito), and pungi leaves it false for disk images.
        bootable: false,
    };
    images_json::update(&images_json_path, VARIANT, &compose, &entry)?;

    Ok(PostprocessOutcome {
        image: cfg.output.clone(),
        checksum: checksum_path,
        manifest: manifest_path,
        images_json: images_json_path,
        virtual_size: size,
        file_size,
        sha256,
        stats,
        discarded_bytes,
    })
}
