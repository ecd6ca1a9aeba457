//! The plain tar archives that boxes and OVAs are: every entry a regular file with mode
//! 0644, owner root and one mtime (SOURCE_DATE_EPOCH), so the same disk gives the same bytes.

use std::fs::File;
use std::io::{BufWriter, Read, Write};

use anyhow::{Context, Result};

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

/// Appends one file to a box.
pub fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
    mtime: u64,
) -> Result<()> {
    let mut h = entry_header(size, mtime);
    tar.append_data(&mut h, name, data)
        .with_context(|| format!("adding {name} to the box"))
}

/// Ends a tar written into a file, syncs it, returns the file and its length.
pub fn finish_tar(tar: tar::Builder<BufWriter<File>>) -> Result<(File, u64)> {
    let file = tar
        .into_inner()
        .context("ending the archive")?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing the archive")?;
    file.sync_all().context("syncing the archive")?;
    let len = file.metadata().context("reading the archive size")?.len();
    Ok((file, len))
}
