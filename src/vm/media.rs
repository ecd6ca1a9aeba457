//! Installer media: kernel and initrd out of a boot.iso (read with hadris-iso, no mounting),
//! the `inst.stage2=hd:LABEL=...` argument, and the kickstart cpio appended to an initrd.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where boot.iso keeps the installer kernel and initrd (lorax; `isolinux/` on older ISOs).
const KERNEL_DIRS: &[&str] = &["images/pxeboot", "isolinux"];

/// The installer to boot: kernel, initrd, and the ISO and `inst.stage2=` that go with them.
#[derive(Debug, Clone)]
pub struct InstallerMedia {
    /// The installer kernel (for an ISO, a copy extracted from it).
    pub kernel: PathBuf,
    /// The installer initrd (for an ISO, a copy extracted from it).
    pub initrd: PathBuf,
    /// The ISO to attach read-only.
    pub iso: Option<PathBuf>,
    /// `inst.stage2=` value, if any.
    pub stage2: Option<String>,
}

/// Extracts `vmlinuz` and `initrd.img` from `iso` into `dir`.
pub fn from_iso(iso: &Path, dir: &Path) -> Result<InstallerMedia> {
    let label = volume_id(iso)?;
    let file =
        File::open(iso).with_context(|| format!("opening installer ISO {}", iso.display()))?;
    let mut reader = hadris_iso::sync::read::IsoReader::open(std::io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{}: not a readable ISO 9660 image: {e:?}", iso.display()))?;
    let mut found = None;
    for d in KERNEL_DIRS {
        let k = reader
            .find_path(&format!("{d}/vmlinuz"))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let i = reader
            .find_path(&format!("{d}/initrd.img"))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if let (Some(k), Some(i)) = (k, i) {
            found = Some((k, i));
            break;
        }
    }
    let Some((k, i)) = found else {
        bail!(
            "installer ISO {} has no kernel: looked for images/pxeboot/vmlinuz + initrd.img and isolinux/vmlinuz + \
             initrd.img. Is it an installer boot.iso (not a live or DVD image)? Or pass --kernel and --initrd",
            iso.display()
        );
    };
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    for (entry, out) in [(k, &kernel), (i, &initrd)] {
        let mut f = reader
            .open_file(&entry)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut w = std::io::BufWriter::new(
            File::create(out).with_context(|| format!("creating {}", out.display()))?,
        );
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read_chunk(&mut buf)
                .map_err(|e| anyhow::anyhow!("reading {} from the ISO: {e:?}", out.display()))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])?;
        }
        w.flush()?;
    }
    Ok(InstallerMedia {
        kernel,
        initrd,
        iso: Some(iso.to_path_buf()),
        stage2: Some(format!("hd:LABEL={}", udev_escape(&label))),
    })
}

/// The volume identifier of the primary volume descriptor (sector 16, bytes 40..72), which
/// is what `LABEL=` matches. Read directly: the 32 bytes are fixed by ISO 9660.
pub fn volume_id(iso: &Path) -> Result<String> {
    let mut f =
        File::open(iso).with_context(|| format!("opening installer ISO {}", iso.display()))?;
    let mut pvd = [0u8; 2048];
    f.seek(SeekFrom::Start(16 * 2048))?;
    f.read_exact(&mut pvd)
        .with_context(|| format!("{}: too short for an ISO 9660 image", iso.display()))?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        bail!(
            "{}: no ISO 9660 primary volume descriptor (is it an ISO image?)",
            iso.display()
        );
    }
    Ok(String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string())
}

/// udev's escaping for `/dev/disk/by-label` names, which Anaconda's `LABEL=` expects
/// (lorax's udev_escape): anything outside `[A-Za-z0-9#+-.:=@_]` becomes `\xNN`.
pub fn udev_escape(label: &str) -> String {
    let mut out = String::new();
    for b in label.bytes() {
        if b.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Copies `initrd` to `out` and appends a gzip'd newc cpio holding `/ks.cfg`: the kernel
/// unpacks concatenated archives in order, so the installer finds `/ks.cfg` (`inst.ks=file:/ks.cfg`).
pub fn initrd_with_kickstart(initrd: &Path, ks: &[u8], out: &Path) -> Result<()> {
    std::fs::copy(initrd, out)
        .with_context(|| format!("copying {} to {}", initrd.display(), out.display()))?;
    let mut f = std::fs::OpenOptions::new().append(true).open(out)?;
    // Pad to 4 bytes: the kernel looks for the next archive on a 4-byte boundary.
    let len = f.metadata()?.len();
    f.write_all(&vec![0u8; ((4 - len % 4) % 4) as usize])?;
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(&newc_cpio(&[("ks.cfg", 0o100644, ks)]))?;
    gz.finish()?.sync_all()?;
    Ok(())
}

/// A newc cpio archive of regular files, with the trailer. Hand-written: it is one header
/// format of 13 hex fields, smaller than a dependency.
fn newc_cpio(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
        let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(&mut out, i as u32 + 1, name, *mode, data);
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandExt as _;

    #[test]
    fn escapes_labels_like_udev() {
        assert_eq!(
            udev_escape("Fedora-S-dvd-x86_64-41"),
            "Fedora-S-dvd-x86_64-41"
        );
        assert_eq!(udev_escape("Standin Boot 1"), "Standin\\x20Boot\\x201");
    }

    /// The appended archive must be readable by the real cpio.
    #[test]
    fn cpio_is_read_by_cpio() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.cpio");
        std::fs::write(&a, newc_cpio(&[("ks.cfg", 0o100644, b"poweroff\n")])).unwrap();
        std::process::Command::new("cpio")
            .args(["-i", "--quiet", "-D"])
            .arg(dir.path().join("x"))
            .arg("--make-directories")
            .run_with_stdin(&std::fs::read(&a).unwrap())
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("x/ks.cfg")).unwrap(),
            b"poweroff\n"
        );
    }
}
