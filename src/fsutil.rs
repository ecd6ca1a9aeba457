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

/// The SHA-256 of a file's content, hex-encoded, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
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
