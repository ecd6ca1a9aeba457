//! Bounds on an RPM's headers, checked before the rpm crate reads the file.
//!
//! The rpm crate allocates what a header's index count and data length claim before it reads
//! a byte of them, so a 200-byte file could make it allocate hundreds of MiB (found by
//! fuzzing, issue 16). Here both headers are checked against rpm's own limits and against the
//! file's length, reading only their 16-byte intros. Layout: rpm's `lib/header.c` and the
//! RPM file format (lead, signature header padded to 8 bytes, main header, payload).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};

/// The lead: a fixed 96-byte block before the signature header.
const LEAD: u64 = 96;
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];
/// rpm's `HEADER_TAGS_MAX` and `HEADER_DATA_MAX` (`lib/header_internal.h`).
const MAX_TAGS: u64 = 0xffff;
const MAX_DATA: u64 = 0x0fff_ffff;

/// Fails, naming the file, unless both headers fit rpm's limits and the file.
pub fn check_header_sizes(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening RPM {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading RPM {}", path.display()))?
        .len();
    let mut pos = LEAD;
    for (name, pad_to_8) in [("signature", true), ("main", false)] {
        ensure!(
            pos + 16 <= len,
            "RPM {}: the file ends before its {name} header ({len} bytes)",
            path.display()
        );
        let mut intro = [0u8; 16];
        file.read_exact_at(&mut intro, pos)
            .with_context(|| format!("reading RPM {}", path.display()))?;
        ensure!(
            intro[..3] == HEADER_MAGIC,
            "RPM {}: no {name} header at byte {pos} (not an RPM, or corrupt)",
            path.display()
        );
        let tags = u64::from(u32::from_be_bytes(
            intro[8..12].try_into().expect("4 bytes"),
        ));
        let data = u64::from(u32::from_be_bytes(
            intro[12..16].try_into().expect("4 bytes"),
        ));
        ensure!(
            tags <= MAX_TAGS && data <= MAX_DATA,
            "RPM {}: the {name} header claims {tags} tags and {data} bytes of data, over rpm's limits",
            path.display()
        );
        let end = pos + 16 + tags * 16 + data;
        ensure!(
            end <= len,
            "RPM {}: the {name} header claims {} bytes but the file has {} left (truncated or corrupt)",
            path.display(),
            end - pos,
            len - pos
        );
        // Each index entry points into the data section; the rpm crate slices at the offset
        // without checking it (a panic, found by fuzzing). rpm's own limit is the same
        // (`hdrchkRange`: offset <= data length).
        let mut index = vec![0u8; (tags * 16) as usize];
        file.read_exact_at(&mut index, pos + 16)
            .with_context(|| format!("reading RPM {}", path.display()))?;
        for (i, entry) in index.chunks_exact(16).enumerate() {
            let field = |at: usize| {
                u64::from(u32::from_be_bytes(
                    entry[at..at + 4].try_into().expect("4 bytes"),
                ))
            };
            let (tag, offset, count) = (field(0), field(8), field(12));
            ensure!(
                offset <= data && count <= data.max(1),
                "RPM {}: entry {i} (tag {tag}) of the {name} header claims {count} items at \
                 offset {offset} of {data} bytes of data (corrupt)",
                path.display()
            );
        }
        pos = if pad_to_8 {
            end.next_multiple_of(8)
        } else {
            end
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_rpms() -> Vec<std::path::PathBuf> {
        // The repository's copy of the shared fixtures (real rpmbuild output).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rpms");
        let mut out: Vec<_> = walkdir::WalkDir::new(&dir)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.extension().is_some_and(|e| e == "rpm"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn real_rpms_pass() {
        let rpms = fixture_rpms();
        assert!(!rpms.is_empty());
        for p in rpms {
            check_header_sizes(&p).unwrap_or_else(|e| panic!("{e:#}"));
        }
    }

    #[test]
    fn inflated_claims_and_truncation_are_refused_naming_the_file() {
        let src = std::fs::read(&fixture_rpms()[0]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.rpm");
        // The signature header's data length raised to 200 MiB.
        let mut bad = src.clone();
        bad[108..112].copy_from_slice(&(200u32 << 20).to_be_bytes());
        std::fs::write(&path, &bad).unwrap();
        let err = format!("{:#}", check_header_sizes(&path).unwrap_err());
        assert!(
            err.contains("bad.rpm") && err.contains("signature header"),
            "{err}"
        );
        // Over rpm's tag limit.
        let mut bad = src.clone();
        bad[104..108].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        std::fs::write(&path, &bad).unwrap();
        assert!(check_header_sizes(&path).is_err());
        // Cut inside the main header.
        let be = |at: usize| u32::from_be_bytes(src[at..at + 4].try_into().unwrap()) as usize;
        let main = (96 + 16 + be(104) * 16 + be(108)).next_multiple_of(8);
        std::fs::write(&path, &src[..main + 20]).unwrap();
        let err = format!("{:#}", check_header_sizes(&path).unwrap_err());
        assert!(err.contains("main header"), "{err}");
        // Not an RPM.
        std::fs::write(&path, vec![0u8; 500]).unwrap();
        assert!(check_header_sizes(&path).is_err());
    }

    /// The fuzzer's find: an index entry whose offset lies past the data section made the rpm
    /// crate slice out of range and panic.
    #[test]
    fn entries_pointing_outside_the_data_are_refused() {
        let src = std::fs::read(&fixture_rpms()[0]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad-offset.rpm");
        let be = |at: usize| u32::from_be_bytes(src[at..at + 4].try_into().unwrap());
        let data = be(108);
        for (entry_field, value) in [(8, data + 1), (8, 100_663_337), (12, data + 1)] {
            let mut bad = src.clone();
            // The signature header's first index entry starts at byte 112.
            bad[112 + entry_field..112 + entry_field + 4].copy_from_slice(&value.to_be_bytes());
            std::fs::write(&path, &bad).unwrap();
            let err = format!("{:#}", check_header_sizes(&path).unwrap_err());
            assert!(
                err.contains("bad-offset.rpm") && err.contains("entry 0"),
                "{err}"
            );
            // And the whole read path refuses it instead of panicking.
            assert!(crate::compose::sources::info_from_header(&path, "fuzz").is_err());
        }
        let found = crate::fsutil::fuzz_regression("rpm_import-entry-offset-past-data");
        let err = format!("{:#}", check_header_sizes(&found).unwrap_err());
        assert!(err.contains("offset 100663337"), "{err}");
        assert!(crate::compose::sources::info_from_header(&found, "fuzz").is_err());
    }
}
