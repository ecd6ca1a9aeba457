//! Opening an input image and its backing chain, flattened into one [`BlockSource`].

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::qcow2_read::{self, Qcow2Image};
use super::raw_read::RawImage;
use super::source::BlockSource;

/// Longer chains are almost certainly a loop (an image that is its own backing file).
const MAX_CHAIN_DEPTH: usize = 32;
const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// Resolves a backing file name the way QEMU does: relative names are relative to the
/// directory of the image that names them, not to the current directory.
pub fn resolve(image: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_owned()
    } else {
        image.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// Opens `path` as qcow2 or raw; `format` is the backing format recorded by the overlay,
/// otherwise the format is probed from the magic.
pub fn open_chain(path: &Path, format: Option<&str>, depth: usize) -> Result<Box<dyn BlockSource>> {
    if depth > MAX_CHAIN_DEPTH {
        bail!(
            "the backing chain is deeper than {MAX_CHAIN_DEPTH} images (a loop?) at {}",
            path.display()
        );
    }
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let mut magic = [0u8; 6];
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = f
        .read(&mut magic)
        .with_context(|| format!("reading {}", path.display()))?;
    let probed_qcow2 = n >= 4 && magic[..4] == qcow2_read::MAGIC;
    if n == 6 && &magic == LUKS_MAGIC {
        bail!(
            "{} is a LUKS-encrypted image; decrypt it first (qemu-img convert with --object secret)",
            path.display()
        );
    }
    match format {
        Some("qcow2") => open_qcow2(path, depth),
        Some("raw") if probed_qcow2 => {
            bail!(
                "{} is declared raw by its overlay but looks like qcow2; refusing to guess",
                path.display()
            )
        }
        Some("raw") => Ok(Box::new(RawImage::open(path)?)),
        Some(other) => bail!(
            "{}: backing format {other:?} is not supported (qcow2 or raw)",
            path.display()
        ),
        None if probed_qcow2 => open_qcow2(path, depth),
        None => Ok(Box::new(RawImage::open(path)?)),
    }
}

/// Opens a qcow2 image and, through [`open_chain`], the backing file it names.
fn open_qcow2(path: &Path, depth: usize) -> Result<Box<dyn BlockSource>> {
    let mut img = Qcow2Image::open(path)?;
    if let Some((name, format)) = img.backing_file() {
        let resolved = resolve(path, name);
        let src = open_chain(&resolved, format, depth + 1).with_context(|| {
            format!(
                "opening backing file {name:?} of {} (looked for {})",
                path.display(),
                resolved.display()
            )
        })?;
        img.attach_backing(src);
    }
    Ok(Box::new(img))
}

/// Opens the postprocess input: qcow2 (with its backing chain) or raw. Without an explicit
/// format a `.qcow2` name means qcow2, so a damaged magic is an error instead of a silent
/// "raw" guess; other names are probed.
pub fn open_input(path: &Path, format: Option<&str>) -> Result<Box<dyn BlockSource>> {
    let by_name = match path.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => Some("qcow2"),
        _ => None,
    };
    open_chain(path, format.or(by_name), 0)
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::path::Path;

    #[test]
    fn relative_backing_names_are_relative_to_the_image() {
        assert_eq!(
            resolve(Path::new("/a/b/top.qcow2"), "base.qcow2"),
            Path::new("/a/b/base.qcow2")
        );
        assert_eq!(
            resolve(Path::new("/a/b/top.qcow2"), "../c/base.qcow2"),
            Path::new("/a/b/../c/base.qcow2")
        );
        assert_eq!(
            resolve(Path::new("/a/b/top.qcow2"), "/abs/base"),
            Path::new("/abs/base")
        );
        assert_eq!(
            resolve(Path::new("top.qcow2"), "base.qcow2"),
            Path::new("base.qcow2")
        );
    }
}
