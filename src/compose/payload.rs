//! An RPM's payload: the compressed cpio archive after the headers, read one entry at a time.
//!
//! Hand-written rather than the rpm crate's `PackageReader`, because that reader (rpm 0.30.2,
//! `payload.rs`) allocates an entry's name at the length its cpio header claims before checking
//! it, so a hostile package makes it allocate up to 4 GiB per entry (found by fuzzing, issue 16),
//! and it gives no way to bound the xz decoder's dictionary. Here names are bounded before any
//! allocation and the decompressors run with memory limits.
//!
//! Format (rpm's `lib/cpio.c`): "new ASCII" cpio (magic `070701`, thirteen 8-digit hex fields,
//! the name, padding to 4 bytes, the data, padding to 4 bytes), ending with an entry named
//! `TRAILER!!!`. Packages with files of 4 GiB or more use rpm's stripped form instead: magic
//! `07070X` and one hex field, the index of the file in the header's file list, whose size
//! the header gives. Only the entries carry paths; which files land where is decided by the
//! header model, never by these names.

use std::io::{self, BufRead, Read};

use anyhow::{Context, Result, bail, ensure};

/// cpio's header magic for the new ASCII format without checksums.
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The same format with checksums (which rpm never fills in).
const NEWC_CRC_MAGIC: &[u8; 6] = b"070702";
/// rpm's stripped header magic, followed by an 8-digit file index.
const STRIPPED_MAGIC: &[u8; 6] = b"07070X";
/// The new ASCII header: magic and thirteen 8-digit fields.
const NEWC_HEADER_LEN: usize = 6 + 13 * 8;
const TRAILER: &[u8] = b"TRAILER!!!";
/// Longest name accepted, with its NUL: Linux's PATH_MAX. rpm itself refuses longer paths.
const MAX_NAME: usize = 4096;
/// The xz decoder's memory limit. `xz -9` needs 65 MiB to decode; rpm writes xz payloads at
/// level 2 by default.
const XZ_MEMLIMIT: u64 = 128 << 20;

/// A file of the header's list, as the payload reader needs it.
#[derive(Debug, Clone)]
pub struct ListedFile {
    /// The path in the package, with its leading `/`.
    pub path: String,
    /// The bytes its payload entry carries: a regular file's content, a symlink's target, 0
    /// for directories, ghosts and hardlinks whose content another member of the set
    /// carries. Only the stripped form reads it.
    pub payload_size: u64,
}

impl ListedFile {
    /// The header's file list with the payload size of every file, as rpm writes payloads:
    /// ghosts carry nothing and, of a set of hardlinks, only the last member carries the bytes.
    pub fn from_header(meta: &rpm::PackageMetadata) -> Result<Vec<ListedFile>> {
        let entries = meta
            .get_file_entries()
            .map_err(|e| anyhow::anyhow!("reading the file list: {e}"))?;
        let devices = meta
            .header
            .get_entry_data_as_u32_array(rpm::IndexTag::RPMTAG_FILEDEVICES)
            .unwrap_or_default();
        let inodes = meta
            .header
            .get_entry_data_as_u32_array(rpm::IndexTag::RPMTAG_FILEINODES)
            .unwrap_or_default();
        let mut files: Vec<ListedFile> = Vec::with_capacity(entries.len());
        let mut last_of_inode = std::collections::HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let ghost = e.flags().contains(rpm::FileFlags::GHOST);
            let regular = e.file_type() == rpm::FileType::Regular;
            if regular
                && !ghost
                && let (Some(d), Some(n)) = (devices.get(i), inodes.get(i))
                && let Some(prev) = last_of_inode.insert((*d, *n), i)
            {
                files[prev].payload_size = 0;
            }
            files.push(ListedFile {
                path: e.path().to_string_lossy().into_owned(),
                // A symlink's entry carries its target; a directory's, nothing (size 0).
                payload_size: if ghost { 0 } else { e.size() as u64 },
            });
        }
        Ok(files)
    }
}

/// One entry of the payload; its bytes are read from the [`Payload`] itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadEntry {
    /// The path it stands for, with a leading `/` (as in the header's file list).
    pub path: String,
    /// The bytes of content that follow (0: none, e.g. a hardlink carried by another entry).
    pub size: u64,
}

/// Reads a payload entry by entry; between [`Payload::next_entry`] calls, `read` gives the
/// current entry's bytes and then end-of-file.
pub struct Payload<R> {
    archive: R,
    files: Vec<ListedFile>,
    /// Content bytes of the current entry not read yet.
    remaining: u64,
    /// Padding after the current entry's content.
    padding: u64,
    /// Bytes of the archive consumed, for error messages.
    offset: u64,
    finished: bool,
}

/// The decompressor for a payload, chosen by its magic as rpm does.
fn decompressor<'a>(mut input: impl BufRead + 'a) -> Result<Box<dyn Read + 'a>> {
    let head = input.fill_buf().context("reading the payload")?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        // zstd's decoder refuses windows above 128 MiB (window_log_max 27) by default.
        Box::new(zstd::stream::read::Decoder::with_buffer(input).context("starting zstd")?)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        let stream =
            liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, liblzma::stream::CONCATENATED)
                .context("starting xz")?;
        Box::new(liblzma::bufread::XzDecoder::new_stream(input, stream))
    } else if head.starts_with(b"07070") {
        Box::new(input)
    } else {
        let shown: Vec<String> = head.iter().take(6).map(|b| format!("{b:02x}")).collect();
        bail!(
            "the payload's compression is not supported (it starts with {}); gzip, zstd and xz are",
            shown.join(" ")
        )
    })
}

impl<'a> Payload<Box<dyn Read + 'a>> {
    /// The payload of a package whose headers `input` has just been read past (e.g. by
    /// `rpm::PackageMetadata::parse`), decompressed on the fly.
    pub fn after_headers(input: impl BufRead + 'a, files: Vec<ListedFile>) -> Result<Self> {
        Ok(Payload::new(decompressor(input)?, files))
    }
}

impl<R: Read> Payload<R> {
    /// A payload over an already decompressed archive.
    pub fn new(archive: R, files: Vec<ListedFile>) -> Self {
        Payload {
            archive,
            files,
            remaining: 0,
            padding: 0,
            offset: 0,
            finished: false,
        }
    }

    /// The next entry, or `None` after the trailer. Skips what is left of the current one.
    pub fn next_entry(&mut self) -> Result<Option<PayloadEntry>> {
        if self.finished {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let at = self.offset;
        let mut magic = [0u8; 6];
        self.read_archive(&mut magic)
            .with_context(|| format!("payload offset {at}: reading an entry header"))?;
        if &magic == STRIPPED_MAGIC {
            let mut digits = [0u8; 8];
            self.read_archive(&mut digits)
                .with_context(|| format!("payload offset {at}: reading an entry header"))?;
            let index = hex(&digits, at)? as usize;
            let file = self.files.get(index).with_context(|| {
                format!(
                    "payload offset {at}: entry for file {index}, but the header lists {}",
                    self.files.len()
                )
            })?;
            let entry = PayloadEntry {
                path: file.path.clone(),
                size: file.payload_size,
            };
            // The 14-byte header is padded to 16.
            self.skip(pad4(self.offset))?;
            self.remaining = entry.size;
            self.padding = pad4(self.offset + entry.size);
            return Ok(Some(entry));
        }
        ensure!(
            &magic == NEWC_MAGIC || &magic == NEWC_CRC_MAGIC,
            "payload offset {at}: not a cpio entry (magic {:?}); the payload is corrupt",
            String::from_utf8_lossy(&magic)
        );
        let mut header = [0u8; NEWC_HEADER_LEN - 6];
        self.read_archive(&mut header)
            .with_context(|| format!("payload offset {at}: reading an entry header"))?;
        let mut fields = [0u32; 13];
        for (f, digits) in fields.iter_mut().zip(header.chunks_exact(8)) {
            *f = hex(digits, at)?;
        }
        let (size, name_len) = (u64::from(fields[6]), fields[11] as usize);
        // Bounded before anything is allocated for it.
        ensure!(
            (1..=MAX_NAME).contains(&name_len),
            "payload offset {at}: entry name of {name_len} bytes (at most {MAX_NAME})"
        );
        let mut name = vec![0u8; name_len];
        self.read_archive(&mut name)
            .with_context(|| format!("payload offset {at}: reading the entry name"))?;
        ensure!(
            name.pop() == Some(0),
            "payload offset {at}: entry name is not NUL-terminated"
        );
        self.skip(pad4(self.offset))?;
        if name == TRAILER {
            self.finished = true;
            return Ok(None);
        }
        let name = String::from_utf8_lossy(&name);
        let relative = name.strip_prefix("./").unwrap_or(&name);
        let relative = relative.strip_prefix('/').unwrap_or(relative);
        self.remaining = size;
        self.padding = pad4(self.offset + size);
        Ok(Some(PayloadEntry {
            path: format!("/{relative}"),
            size,
        }))
    }

    /// Reads what is left of the current entry (so that errors surface), without keeping it.
    pub fn finish_entry(&mut self) -> Result<()> {
        let at = self.offset;
        self.skip(self.remaining)
            .with_context(|| format!("payload offset {at}: reading an entry's content"))?;
        self.remaining = 0;
        Ok(())
    }

    fn read_archive(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.archive.read_exact(buf)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let copied = io::copy(&mut (&mut self.archive).take(n), &mut io::sink())?;
        self.offset += copied;
        ensure!(
            copied == n,
            "the payload ends early, at offset {} (the package is truncated)",
            self.offset
        );
        Ok(())
    }
}

impl<R: Read> Read for Payload<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.archive.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the payload ends early, at offset {}", self.offset),
            ));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

/// An 8-digit hex field of an entry header at `at`.
fn hex(digits: &[u8], at: u64) -> Result<u32> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .with_context(|| {
            format!(
                "payload offset {at}: {:?} is not a hex field; the payload is corrupt",
                String::from_utf8_lossy(digits)
            )
        })
}

/// Padding that brings `offset` to a multiple of 4.
fn pad4(offset: u64) -> u64 {
    (4 - offset % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newc(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = NEWC_MAGIC.to_vec();
        let name_len = name.len() + 1;
        for f in [1, 0o100644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name_len, 0] {
            v.extend(format!("{f:08x}").bytes());
        }
        v.extend(name.bytes());
        v.push(0);
        v.resize(v.len().next_multiple_of(4), 0);
        v.extend(data);
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    fn read_all(archive: &[u8], files: Vec<ListedFile>) -> Result<Vec<(String, Vec<u8>)>> {
        let mut p = Payload::new(archive, files);
        let mut out = Vec::new();
        while let Some(e) = p.next_entry()? {
            let mut data = Vec::new();
            p.read_to_end(&mut data)?;
            assert_eq!(data.len() as u64, e.size);
            out.push((e.path, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_entries_with_every_padding_and_stops_at_the_trailer() {
        let mut a = Vec::new();
        for (name, data) in [
            ("./usr/bin/a", &b"x"[..]),
            ("./usr/lib/bb", b"yz"),
            ("./etc/ccc", b""),
            ("./d", b"0123"),
        ] {
            a.extend(newc(name, data));
        }
        a.extend(newc("TRAILER!!!", b""));
        a.extend(newc("./after-the-trailer", b"never read"));
        let got = read_all(&a, vec![]).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["/usr/bin/a", "/usr/lib/bb", "/etc/ccc", "/d"]);
        assert_eq!(got[1].1, b"yz");
        assert_eq!(got[3].1, b"0123");
    }

    #[test]
    fn unread_content_is_skipped_by_the_next_entry() {
        let mut a = newc("./big", &[7u8; 10_001]);
        a.extend(newc("./small", b"ok"));
        a.extend(newc("TRAILER!!!", b""));
        let mut p = Payload::new(&a[..], vec![]);
        assert_eq!(p.next_entry().unwrap().unwrap().size, 10_001);
        let mut three = [0u8; 3];
        p.read_exact(&mut three).unwrap();
        let small = p.next_entry().unwrap().unwrap();
        assert_eq!(small.path, "/small");
        let mut data = String::new();
        p.read_to_string(&mut data).unwrap();
        assert_eq!(data, "ok");
        assert_eq!(p.next_entry().unwrap(), None);
        assert_eq!(p.next_entry().unwrap(), None);
    }

    #[test]
    fn stripped_entries_take_path_and_size_from_the_header() {
        let mut a = b"07070X00000001\0\0".to_vec();
        a.extend(b"abcde");
        a.resize(a.len().next_multiple_of(4), 0);
        a.extend(newc("TRAILER!!!", b""));
        let files = vec![
            ListedFile {
                path: "/usr/a".into(),
                payload_size: 0,
            },
            ListedFile {
                path: "/usr/huge".into(),
                payload_size: 5,
            },
        ];
        let got = read_all(&a, files.clone()).unwrap();
        assert_eq!(got, [("/usr/huge".to_string(), b"abcde".to_vec())]);
        let mut out_of_list = b"07070X00000002".to_vec();
        out_of_list.extend(newc("TRAILER!!!", b""));
        let e = format!("{:#}", read_all(&out_of_list, files).unwrap_err());
        assert!(
            e.contains("entry for file 2, but the header lists 2"),
            "{e}"
        );
    }

    #[test]
    fn a_huge_name_length_is_refused_before_anything_is_allocated() {
        // The fuzzer's finding: an ASCII field claiming a 4 GiB name.
        let mut a = newc("./x", b"");
        let field = NEWC_HEADER_LEN - 2 * 8;
        a[field..field + 8].copy_from_slice(b"ffffffff");
        let e = format!("{:#}", read_all(&a, vec![]).unwrap_err());
        assert!(e.contains("entry name of 4294967295 bytes"), "{e}");
    }

    #[test]
    fn corrupt_and_truncated_archives_are_errors() {
        let good = {
            let mut a = newc("./f", b"content");
            a.extend(newc("TRAILER!!!", b""));
            a
        };
        for cut in [
            0,
            3,
            20,
            NEWC_HEADER_LEN + 2,
            NEWC_HEADER_LEN + 6,
            good.len() - 5,
        ] {
            let e = format!("{:#}", read_all(&good[..cut], vec![]).unwrap_err());
            assert!(
                e.contains("offset") || e.contains("ends early"),
                "cut {cut}: {e}"
            );
        }
        let mut bad_magic = good.clone();
        bad_magic[5] = b'7';
        let e = format!("{:#}", read_all(&bad_magic, vec![]).unwrap_err());
        assert!(e.contains("not a cpio entry"), "{e}");
        let mut bad_hex = good.clone();
        bad_hex[10] = b'g';
        let e = format!("{:#}", read_all(&bad_hex, vec![]).unwrap_err());
        assert!(e.contains("not a hex field"), "{e}");
        let mut no_nul = good;
        no_nul[NEWC_HEADER_LEN + 3] = b'!';
        let e = format!("{:#}", read_all(&no_nul, vec![]).unwrap_err());
        assert!(e.contains("not NUL-terminated"), "{e}");
    }

    #[test]
    fn unknown_compression_is_named() {
        let e = format!(
            "{:#}",
            Payload::after_headers(&b"BZh91AY&SY"[..], vec![])
                .err()
                .unwrap()
        );
        assert!(e.contains("42 5a 68 39 31 41"), "{e}");
    }
}
