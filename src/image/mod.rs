//! Disk images: read qcow2/raw, sparsify, write compressed qcow2, checksums and manifest.
//!
//! The entry point is [`postprocess`]: installed disk in, published image plus `CHECKSUM`
//! and `manifest.json` out. Files: `qcow2_read`/`raw_read`/`backing` (input),
//! `discard` (filesystem free space), `convert` (the sparsify + compress loop),
//! `compress`, `qcow2_write`/`raw_write` (output), `checksum`, `manifest`.

pub mod backing;
pub mod checksum;
pub mod cli;
pub mod compress;
pub mod convert;
pub mod discard;
pub mod manifest;
mod progress;
pub mod qcow2_read;
pub mod qcow2_write;
pub mod raw_read;
pub mod raw_write;
pub mod source;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub use compress::Codec;
pub use convert::Stats;

/// The published file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum OutputFormat {
    #[value(name = "qcow2")]
    Qcow2,
    #[value(name = "raw")]
    Raw,
    #[value(name = "raw.xz")]
    RawXz,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Qcow2 => "qcow2",
            OutputFormat::Raw => "raw",
            OutputFormat::RawXz => "raw.xz",
        }
    }
}

/// Compression of qcow2 clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Zlib,
    Zstd,
    None,
}

impl Compression {
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
    pub input: PathBuf,
    /// `qcow2` or `raw`; `None` probes (a `.qcow2` name must be qcow2).
    pub input_format: Option<String>,
    pub output: PathBuf,
    pub format: OutputFormat,
    pub compression: Compression,
    pub discard_unused: bool,
    /// Defaults to `CHECKSUM` next to the output.
    pub checksum: Option<PathBuf>,
    /// Defaults to `manifest.json` next to the output.
    pub manifest: Option<PathBuf>,
    pub ostree_ref: Option<String>,
    pub ostree_commit: Option<String>,
    pub version: Option<String>,
    /// The kickstart used for the install; its SHA-256 goes into the manifest.
    pub kickstart: Option<PathBuf>,
    /// No progress output (the pipeline reports on its own).
    pub quiet: bool,
}

impl PostprocessConfig {
    /// A config with defaults: qcow2, zlib, no discard, no provenance.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> PostprocessConfig {
        PostprocessConfig {
            input: input.into(),
            input_format: None,
            output: output.into(),
            format: OutputFormat::Qcow2,
            compression: Compression::Zlib,
            discard_unused: false,
            checksum: None,
            manifest: None,
            ostree_ref: None,
            ostree_commit: None,
            version: None,
            kickstart: None,
            quiet: false,
        }
    }
}

/// What `postprocess` produced.
#[derive(Debug, Clone)]
pub struct PostprocessOutcome {
    pub image: PathBuf,
    pub checksum: PathBuf,
    pub manifest: PathBuf,
    pub virtual_size: u64,
    pub file_size: u64,
    pub sha256: String,
    pub stats: Stats,
    /// Bytes marked free by the filesystems (with `discard_unused`).
    pub discarded_bytes: u64,
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
    if cfg.format != OutputFormat::Qcow2
        && cfg.compression != Compression::Zlib
        && cfg.compression != Compression::None
    {
        bail!(
            "--compression applies to qcow2 only; {} output is not cluster-compressed",
            cfg.format.name()
        );
    }
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
    let mut progress = progress::Progress::new(size, cfg.quiet);
    let started = std::time::Instant::now();
    let what = || format!("writing {}", cfg.output.display());
    let (stats, file_size) = match cfg.format {
        OutputFormat::Qcow2 => {
            let codec = cfg.compression.codec();
            let mut w = qcow2_write::Qcow2Writer::new(file, size, codec).with_context(what)?;
            let stats =
                convert::run(&*src, &free, codec, &mut w, &mut progress).with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
        OutputFormat::Raw => {
            let mut w = raw_write::RawSink { file, size };
            let stats =
                convert::run(&*src, &free, None, &mut w, &mut progress).with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
        OutputFormat::RawXz => {
            let mut w = raw_write::XzSink::new(file, size).with_context(what)?;
            let stats =
                convert::run(&*src, &free, None, &mut w, &mut progress).with_context(what)?;
            (stats, w.finish().with_context(what)?.1)
        }
    };
    drop(progress);
    tracing::info!(
        "image written and synced in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting permissions on {}", tmp.path().display()))?;
    tmp.persist(&cfg.output)
        .with_context(|| format!("renaming the finished image to {}", cfg.output.display()))?;
    crate::fsutil::sync_dir(&dir)?;

    let hashing = std::time::Instant::now();
    let sha256 = checksum::sha256_file(&cfg.output)?;
    tracing::info!("sha256 in {:.2} s", hashing.elapsed().as_secs_f64());
    let checksum_path = cfg.checksum.clone().unwrap_or_else(|| dir.join("CHECKSUM"));
    crate::fsutil::write_atomic(
        &checksum_path,
        checksum::checksum_text(&name, file_size, &sha256).as_bytes(),
    )?;
    let manifest = manifest::Manifest {
        name: name.clone(),
        format: cfg.format.name().to_owned(),
        compression: (cfg.format == OutputFormat::Qcow2)
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

    Ok(PostprocessOutcome {
        image: cfg.output.clone(),
        checksum: checksum_path,
        manifest: manifest_path,
        virtual_size: size,
        file_size,
        sha256,
        stats,
        discarded_bytes,
    })
}
