//! Uncompressed tar packages of a disk and its descriptors: Vagrant boxes and OVAs.
//!
//! Every entry gets mode 0644, uid/gid 0 and the same mtime (SOURCE_DATE_EPOCH), so the
//! same disk gives the same package.

use std::fs::File;
use std::io::{BufWriter, Read};

use anyhow::{Context, Result};

/// One file of a package.
pub enum Entry<'a> {
    /// Text made in memory (metadata, descriptors).
    Bytes(&'a [u8]),
    /// A finished disk in a temporary file, rewound, with its length.
    File(&'a File, u64),
}

/// A tar entry header: regular file, mode 0644, owner root, the given mtime.
fn entry_header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

/// Writes `entries` in order as a tar into `out` and syncs it; returns the file and its
/// length.
pub fn write_tar(out: File, entries: &[(&str, Entry<'_>)], mtime: u64) -> Result<(File, u64)> {
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, out));
    for (name, entry) in entries {
        let (size, data): (u64, Box<dyn Read + '_>) = match entry {
            Entry::Bytes(b) => (b.len() as u64, Box::new(*b)),
            Entry::File(f, len) => (*len, Box::new(*f)),
        };
        let mut h = entry_header(size, mtime);
        tar.append_data(&mut h, name, data)
            .with_context(|| format!("adding {name} to the package"))?;
    }
    let out = tar.into_inner().context("ending the archive")?;
    crate::fsutil::finish_buffered(out, "the archive")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_order_owner_mode_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let disk_path = dir.path().join("disk");
        std::fs::write(&disk_path, b"disk bytes").unwrap();
        let disk = File::open(&disk_path).unwrap();
        let out = File::create(dir.path().join("p.tar")).unwrap();
        let (_, len) = write_tar(
            out,
            &[
                ("a.ovf", Entry::Bytes(b"<xml/>")),
                ("disk.vmdk", Entry::File(&disk, 10)),
            ],
            1_700_000_000,
        )
        .unwrap();
        let bytes = std::fs::read(dir.path().join("p.tar")).unwrap();
        assert_eq!(bytes.len() as u64, len);
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header();
            assert_eq!(
                (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                (0o644, 0, 0)
            );
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((name, body));
        }
        assert_eq!(
            seen,
            [
                ("a.ovf".to_owned(), b"<xml/>".to_vec()),
                ("disk.vmdk".to_owned(), b"disk bytes".to_vec())
            ]
        );
    }
}
