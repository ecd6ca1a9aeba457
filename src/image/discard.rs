//! `--discard-unused`: find the guest byte ranges that filesystems mark free, so deleted data
//! is not shipped.
//!
//! Hand-written: the crates that read ext4 (ext4-view, ext4-rs) read files, not the block
//! bitmaps, and need a `Read` over one partition; all we need is the superblock, the group
//! descriptors and the bitmaps. Anything unexpected makes us keep the whole filesystem (a
//! warning, never an error): discarding too little costs size, discarding too much would
//! corrupt the image.
//! XFS is not handled yet (its free space lives in per-AG B+trees): its blocks are kept.

use anyhow::{Context, Result};

use super::source::BlockSource;

const SECTOR: u64 = 512;

/// A partition (or the whole disk) that may hold a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset from the start of the disk, in bytes.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4")))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8"))
}

fn read(src: &dyn BlockSource, off: u64, len: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    src.read_at(off, &mut b)?;
    Ok(b)
}

/// Lists the partitions of an MBR or GPT disk; a disk without a table is one extent.
pub fn partitions(src: &dyn BlockSource) -> Result<Vec<Extent>> {
    let size = src.virtual_size();
    let mbr = read(src, 0, 512)?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Ok(vec![Extent {
            start: 0,
            len: size,
        }]);
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + i * 16..462 + i * 16]).collect();
    if entries.iter().any(|e| e[4] == 0xee) {
        return gpt_partitions(src);
    }
    let mut parts = Vec::new();
    for e in entries {
        let (ty, lba, count) = (e[4], le32(e, 8), le32(e, 12));
        // Extended partitions (5, 0xf, 0x85) hold logical ones we do not walk: keep them.
        if ty == 0 || count == 0 || matches!(ty, 0x05 | 0x0f | 0x85) {
            continue;
        }
        parts.push(Extent {
            start: lba * SECTOR,
            len: count * SECTOR,
        });
    }
    // An MBR signature without partitions may be a filesystem's boot sector (e.g. FAT).
    if parts.is_empty() {
        parts.push(Extent {
            start: 0,
            len: size,
        });
    }
    Ok(parts)
}

fn gpt_partitions(src: &dyn BlockSource) -> Result<Vec<Extent>> {
    let hdr = read(src, SECTOR, 512)?;
    if &hdr[0..8] != b"EFI PART" {
        tracing::warn!("protective MBR without a GPT header: not discarding anything");
        return Ok(Vec::new());
    }
    let (lba, count, esize) = (le64(&hdr, 72), le32(&hdr, 80), le32(&hdr, 84));
    if !(128..=4096).contains(&esize) || count > 4096 {
        tracing::warn!(
            "implausible GPT header (entry size {esize}, {count} entries): not discarding anything"
        );
        return Ok(Vec::new());
    }
    let table = read(src, lba * SECTOR, (count * esize) as usize)?;
    let mut parts = Vec::new();
    for e in table.chunks_exact(esize as usize) {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if last >= first {
            parts.push(Extent {
                start: first * SECTOR,
                len: (last - first + 1) * SECTOR,
            });
        }
    }
    Ok(parts)
}

/// Free guest byte ranges of every ext4 (ext2/3) filesystem on the disk, sorted and merged.
pub fn free_ranges(src: &dyn BlockSource) -> Result<Vec<(u64, u64)>> {
    let mut free = Vec::new();
    for part in partitions(src).context("reading the partition table")? {
        match ext4_free(src, part) {
            Ok(Some(r)) => {
                let bytes: u64 = r.iter().map(|(s, e)| e - s).sum();
                tracing::info!("ext4 at offset {}: {} MiB free", part.start, bytes >> 20);
                free.extend(r);
            }
            Ok(None) => tracing::info!(
                "partition at offset {}: no ext4 filesystem, kept as is",
                part.start
            ),
            Err(e) => tracing::warn!("partition at offset {}: {e:#}; kept as is", part.start),
        }
    }
    free.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(free.len());
    for (s, e) in free {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    Ok(merged)
}

const EXT4_MAGIC: u64 = 0xef53;
const INCOMPAT_RECOVER: u64 = 0x4;
const INCOMPAT_JOURNAL_DEV: u64 = 0x8;
const INCOMPAT_META_BG: u64 = 0x10;
const INCOMPAT_64BIT: u64 = 0x80;
const BG_BLOCK_UNINIT: u64 = 0x2;
const RO_COMPAT_BIGALLOC: u64 = 0x200;

/// The free blocks of an ext2/3/4 filesystem in `part` as guest byte ranges; `None` when the
/// partition holds no ext filesystem.
fn ext4_free(src: &dyn BlockSource, part: Extent) -> Result<Option<Vec<(u64, u64)>>> {
    if part.len < 2048 {
        return Ok(None);
    }
    let sb = read(src, part.start + 1024, 1024)?;
    if le16(&sb, 56) != EXT4_MAGIC {
        return Ok(None);
    }
    let log = le32(&sb, 24);
    anyhow::ensure!(log <= 6, "ext4 block size 2^(10+{log}) is implausible");
    let bs = 1024u64 << log;
    let incompat = le32(&sb, 96);
    let ro_compat = le32(&sb, 100);
    // A journal that still needs replaying may free or use blocks the bitmaps do not show yet.
    anyhow::ensure!(
        incompat & INCOMPAT_RECOVER == 0,
        "the ext4 journal needs recovery (run e2fsck)"
    );
    anyhow::ensure!(
        incompat & INCOMPAT_JOURNAL_DEV == 0,
        "an external journal device, not a filesystem"
    );
    anyhow::ensure!(
        incompat & INCOMPAT_META_BG == 0,
        "meta_bg group descriptors are not supported"
    );
    anyhow::ensure!(
        ro_compat & RO_COMPAT_BIGALLOC == 0,
        "bigalloc (cluster bitmaps) is not supported"
    );
    // s_state bit 0: cleanly unmounted.
    anyhow::ensure!(
        le16(&sb, 58) & 1 == 1,
        "the filesystem was not cleanly unmounted (run e2fsck)"
    );
    let is64 = incompat & INCOMPAT_64BIT != 0;
    let blocks = le32(&sb, 4) | if is64 { le32(&sb, 0x150) << 32 } else { 0 };
    let first_data = le32(&sb, 20);
    let per_group = le32(&sb, 32);
    anyhow::ensure!(
        per_group > 0 && per_group <= bs * 8,
        "blocks per group {per_group} is implausible"
    );
    anyhow::ensure!(
        blocks * bs <= part.len,
        "the filesystem ({} bytes) is larger than its partition ({} bytes)",
        blocks * bs,
        part.len
    );
    let desc_size = if is64 { le16(&sb, 0xfe).max(32) } else { 32 };
    let groups = (blocks - first_data).div_ceil(per_group);
    let gdt_off = part.start + (first_data + 1) * bs;
    let gdt = read(src, gdt_off, (groups * desc_size) as usize)?;
    let mut free = Vec::new();
    for g in 0..groups {
        let d = &gdt[(g * desc_size) as usize..((g + 1) * desc_size) as usize];
        let flags = le16(d, 0x12);
        if flags & BG_BLOCK_UNINIT != 0 {
            // Its bitmap was never initialised: computing the free set needs the flex_bg
            // metadata layout, so keep the group (such groups were never written to anyway).
            continue;
        }
        let bitmap = le32(d, 0)
            | if is64 && desc_size >= 64 {
                le32(d, 0x20) << 32
            } else {
                0
            };
        anyhow::ensure!(
            bitmap > 0 && bitmap < blocks,
            "group {g}: block bitmap at block {bitmap} is outside the filesystem"
        );
        let bits = read(src, part.start + bitmap * bs, (per_group / 8) as usize)?;
        let base = first_data + g * per_group;
        let n = per_group.min(blocks - base);
        let mut run: Option<u64> = None;
        for i in 0..=n {
            let is_free = i < n && bits[(i / 8) as usize] & (1 << (i % 8)) == 0;
            match (is_free, run) {
                (true, None) => run = Some(i),
                (false, Some(s)) => {
                    free.push((part.start + (base + s) * bs, part.start + (base + i) * bs));
                    run = None;
                }
                _ => {}
            }
        }
    }
    Ok(Some(free))
}

/// Zeroes the parts of `buf` (guest bytes at `offset`) that lie in `free` (sorted, merged).
pub fn zero_free(free: &[(u64, u64)], offset: u64, buf: &mut [u8]) {
    let end = offset + buf.len() as u64;
    let first = free.partition_point(|&(_, e)| e <= offset);
    for &(s, e) in &free[first..] {
        if s >= end {
            break;
        }
        let (a, b) = (s.max(offset) - offset, e.min(end) - offset);
        buf[a as usize..b as usize].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::zero_free;

    #[test]
    fn zero_free_clears_only_the_overlap() {
        let free = [(10, 20), (30, 35), (100, 200)];
        let mut buf = vec![1u8; 40];
        zero_free(&free, 15, &mut buf);
        // Guest 15..20 and 30..35 are at buf 0..5 and 15..20.
        let zeros: Vec<usize> = buf
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == 0)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(zeros, (0..5).chain(15..20).collect::<Vec<_>>());
    }
}
