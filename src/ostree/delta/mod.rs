//! Static deltas (docs/ostree-static-deltas.md): names and paths, the superblock and part
//! byte layouts ([`format`]), reading, listing, showing and deleting; [`generate`] writes them.
//!
//! Layouts follow libostree's ostree-repo-static-delta-private.h; every number ostree calls
//! "non-canonical endian" is written little-endian and the superblock says so with
//! `ostree.endianness` = `'l'`, exactly as ostree does on x86.

pub mod bytecode;
pub mod cli;
pub mod format;
pub mod generate;
pub mod matcher;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};

use super::repo::Repo;

pub use format::{
    DeltaName, Fallback, PART_VERSION, PartHeader, PartPayload, Superblock, b64, decode_part,
    from_b64, index_rel, objtype_byte, objtype_from_byte, parse_part_payload, parse_superblock,
    part_payload_bytes, superblock_bytes,
};
pub use generate::{Compression, GenerateOptions, GenerateReport, generate};

impl Repo {
    /// Every delta in `deltas/` that has a superblock, sorted by name.
    pub fn list_static_deltas(&self) -> Result<Vec<DeltaName>> {
        let root = self.path().join("deltas");
        let mut out = Vec::new();
        let rd = match fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
        };
        for d1 in rd {
            let d1 = d1.with_context(|| format!("reading {}", root.display()))?;
            if !d1.file_type()?.is_dir() {
                continue;
            }
            let n1 = d1.file_name().to_string_lossy().into_owned();
            for d2 in fs::read_dir(d1.path())
                .with_context(|| format!("reading {}", d1.path().display()))?
            {
                let d2 = d2?;
                if !d2.file_type()?.is_dir() || !d2.path().join("superblock").exists() {
                    continue;
                }
                let n2 = d2.file_name().to_string_lossy().into_owned();
                let joined = format!("{n1}{n2}");
                let name = match joined.split_once('-') {
                    Some((f, t)) => DeltaName {
                        from: Some(from_b64(f)?),
                        to: from_b64(t)?,
                    },
                    None => DeltaName {
                        from: None,
                        to: from_b64(&joined)?,
                    },
                };
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The directory holding a delta's superblock and parts inside this repository.
    pub fn static_delta_dir(&self, name: &DeltaName) -> PathBuf {
        self.path().join(name.rel_dir())
    }

    /// Reads and parses a delta's superblock; the error names the file.
    pub fn read_superblock(&self, name: &DeltaName) -> Result<Superblock> {
        let p = self.path().join(name.superblock_rel());
        read_superblock_file(&p)
    }

    /// Removes a delta's directory (`ostree static-delta delete`).
    pub fn delete_static_delta(&self, name: &DeltaName) -> Result<()> {
        let dir = self.static_delta_dir(name);
        ensure!(dir.is_dir(), "Can't find delta {}", name.id());
        // The superblock goes first, so a crash leaves parts without a superblock, which
        // nothing lists or fetches.
        let sb = dir.join("superblock");
        if sb.exists() {
            fs::remove_file(&sb).with_context(|| format!("removing {}", sb.display()))?;
            super::repo::fsync_dir(&dir)?;
        }
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        Ok(())
    }
}

/// Parses the superblock at `path`, naming it in any error.
pub fn read_superblock_file(path: &Path) -> Result<Superblock> {
    let b = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_superblock(&b).with_context(|| {
        format!(
            "{} is not a valid static delta superblock (corrupt or truncated); \
             delete the delta and generate it again",
            path.display()
        )
    })
}

/// GLib's `g_format_size`: SI units, one decimal, a no-break space before the unit.
fn format_size(n: u64) -> String {
    if n < 1000 {
        return if n == 1 {
            "1 byte".into()
        } else {
            format!("{n} bytes")
        };
    }
    let units = ["kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64 / 1000.0;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1}\u{a0}{}", units[i])
}

/// The text of `ostree static-delta show DELTA`, for a delta in `repo`.
pub fn show(repo: &Repo, name: &DeltaName) -> Result<String> {
    let sb = repo.read_superblock(name)?;
    let mut o = String::new();
    let _ = writeln!(o, "Delta: {}", name.id());
    let _ = writeln!(o, "Signed: {}", if sb.signed { "yes" } else { "no" });
    match &sb.from {
        Some(f) => {
            let _ = writeln!(o, "From: {f}");
        }
        None => o.push_str("From <scratch>\n"),
    }
    let _ = writeln!(o, "To: {}", sb.to);
    let _ = writeln!(
        o,
        "Endianness: {}",
        if sb.big_endian { "big" } else { "little" }
    );
    let _ = writeln!(o, "Timestamp: {}", sb.timestamp);
    o.push_str("Number of parents: 0\n");
    let _ = writeln!(o, "Number of fallback entries: {}", sb.fallbacks.len());
    let (mut fs_, mut fu) = (0u64, 0u64);
    for f in &sb.fallbacks {
        let _ = writeln!(o, "  {}", f.object.0);
        fs_ += f.size;
        fu += f.usize;
    }
    let _ = writeln!(o, "Total Fallback Size: {fs_} ({})", format_size(fs_));
    let _ = writeln!(
        o,
        "Total Fallback Uncompressed Size: {fu} ({})",
        format_size(fu)
    );
    let _ = writeln!(o, "Number of parts: {}", sb.parts.len());
    let (mut ts, mut tu) = (0u64, 0u64);
    for (i, p) in sb.parts.iter().enumerate() {
        let _ = writeln!(
            o,
            "PartMeta{i}: nobjects={} size={} usize={}",
            p.objects.len(),
            p.size,
            p.usize
        );
        ts += p.size;
        tu += p.usize;
        let bytes = part_bytes(repo, name, &sb, i)?;
        let payload = decode_part(&bytes)
            .with_context(|| format!("reading part {i} of delta {}", name.id()))?;
        let _ = writeln!(
            o,
            "PartPayload{i}: nmodes={} nxattrs={} blobsize={} opsize={}",
            payload.modes.len(),
            payload.xattrs.len(),
            payload.payload.len(),
            payload.ops.len()
        );
        let n = bytecode::count_ops(&payload, &p.objects)
            .with_context(|| format!("decoding part {i} of delta {}", name.id()))?;
        let _ = writeln!(
            o,
            "PartPayloadOps{i}: openspliceclose={} open={} write={} setread={} unsetread={} close={} bspatch={}",
            n[0], n[1], n[2], n[3], n[4], n[5], n[6]
        );
    }
    let _ = writeln!(o, "Total Part Size: {ts} ({})", format_size(ts));
    let _ = writeln!(
        o,
        "Total Part Uncompressed Size: {tu} ({})",
        format_size(tu)
    );
    let _ = writeln!(o, "Total Size: {} ({})", ts + fs_, format_size(ts + fs_));
    let _ = writeln!(
        o,
        "Total Uncompressed Size: {} ({})",
        tu + fu,
        format_size(tu + fu)
    );
    Ok(o)
}

/// The bytes of part `i`: inline in the superblock, or the file beside it.
pub fn part_bytes(repo: &Repo, name: &DeltaName, sb: &Superblock, i: usize) -> Result<Vec<u8>> {
    let key = name.part_rel(i);
    if let Some((_, v, _)) = sb
        .metadata
        .iter()
        .find(|(k, _, s)| *k == key && s == "(yay)")
    {
        return Ok(v.clone());
    }
    let p = repo.path().join(&key);
    fs::read(&p).with_context(|| format!("reading delta part {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_size_like_glib() {
        assert_eq!(format_size(0), "0 bytes");
        assert_eq!(format_size(999), "999 bytes");
        assert_eq!(format_size(1500), "1.5\u{a0}kB");
        assert_eq!(format_size(2_500_000), "2.5\u{a0}MB");
    }
}
