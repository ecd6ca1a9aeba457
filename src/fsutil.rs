//! Small filesystem helpers shared by the stages: nothing half-written where a finished file belongs.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `data` to `path` through a temporary file in the same directory, fsyncs it and
/// renames it into place, so readers see the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    // Temporary files are created 0600; what we publish must be readable like any output.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting permissions on {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(dir)
}

/// Flushes `out`, syncs its file and returns the file with its length: the end of every
/// streamed output. `what` names the file in errors.
pub fn finish_buffered(out: std::io::BufWriter<fs::File>, what: &str) -> Result<(fs::File, u64)> {
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {what}"))?;
    file.sync_all().with_context(|| format!("syncing {what}"))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading the size of {what}"))?
        .len();
    Ok((file, len))
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Reads the file at `path` to its end in 1 MiB chunks, handing each to `consume`, and
/// returns its length: the one read loop behind every whole-file digest.
pub fn stream_file(path: &Path, mut consume: impl FnMut(&[u8])) -> Result<u64> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(len);
        }
        consume(&buf[..n]);
        len += n as u64;
    }
}

/// The hex digest of a file's content under any RustCrypto hash (`sha2::Sha256`,
/// `md5::Md5`, ...).
pub fn digest_file<D: sha2::Digest>(path: &Path) -> Result<String> {
    let mut hasher = D::new();
    stream_file(path, |chunk| hasher.update(chunk))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The SHA-256 of a file's content, hex-encoded.
pub fn sha256_file(path: &Path) -> Result<String> {
    digest_file::<sha2::Sha256>(path)
}

/// A fuzzer's input kept as a regression test (`tests/fixtures/fuzz-regressions/NAME`).
#[cfg(test)]
pub(crate) fn fuzz_regression(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-regressions")
        .join(name)
}

/// Inflates a raw deflate stream (no zlib header), for tests of what we compress.
#[cfg(test)]
pub(crate) fn test_inflate_raw(z: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(z), &mut out)
        .expect("a valid raw deflate stream");
    out
}

/// Deterministic pseudo-random bytes (xorshift64) for unit tests: incompressible and with no
/// long repeats, like real random data.
#[cfg(test)]
pub(crate) fn test_noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Repetitive text for unit tests: shrinks under any compressor.
#[cfg(test)]
pub(crate) fn test_text(n: usize) -> Vec<u8> {
    b"usr lib systemd unit kernel module config return\n"
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_digests_match_the_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest_file::<md5::Md5>(&path).unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn a_file_longer_than_one_chunk_streams_whole() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data = test_noise((1 << 20) * 2 + 123, 7);
        fs::write(&path, &data).unwrap();
        let mut chunks = 0;
        let mut seen = Vec::new();
        let len = stream_file(&path, |c| {
            chunks += 1;
            seen.extend_from_slice(c);
        })
        .unwrap();
        assert_eq!(len, data.len() as u64);
        assert!(chunks >= 3);
        assert!(seen == data);
        assert_eq!(
            sha256_file(&path).unwrap(),
            hex::encode(sha2::Sha256::digest(&data))
        );
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let err = sha256_file(Path::new("/nonexistent/x.qcow2")).unwrap_err();
        assert!(format!("{err:#}").contains("opening /nonexistent/x.qcow2"));
    }
}
