//! Test data: deterministic random bytes, ownership and modes, and a tree's description to
//! compare two trees by.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A small deterministic PRNG (xorshift64*), so test data needs no extra crate.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` deterministic pseudo-random bytes from `seed`: incompressible, like real random data.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    Rng(seed | 1).fill(&mut v);
    v
}

pub fn write_random(path: &Path, size: usize, rng: &mut Rng) {
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

pub fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// What a tree looks like: path -> (kind, mode, uid, gid, content sha/target, user xattrs).
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("link:{}", fs::read_link(e.path()).unwrap().display())
        } else if ft.is_dir() {
            "dir".to_string()
        } else {
            let data = fs::read(e.path()).unwrap();
            format!(
                "file:{}:{}",
                data.len(),
                hex::encode(sha2::Sha256::digest(&data))
            )
        };
        let mut xattrs: Vec<String> = xattr::list(e.path())
            .unwrap()
            .filter(|n| n.to_string_lossy().starts_with("user."))
            .filter_map(|n| {
                let v = xattr::get(e.path(), &n).unwrap().unwrap_or_default();
                // ostree (libglnx) drops xattrs with an empty value when committing.
                (!v.is_empty()).then(|| format!("{}={}", n.to_string_lossy(), hex::encode(v)))
            })
            .collect();
        xattrs.sort();
        // Symlink permission bits are always 0777 and not meaningful.
        let mode = if ft.is_symlink() {
            0o777
        } else {
            md.mode() & 0o7777
        };
        out.insert(
            format!("/{rel}"),
            format!(
                "{what} mode={mode:o} owner={}:{} xattrs=[{}]",
                md.uid(),
                md.gid(),
                xattrs.join(",")
            ),
        );
    }
    out
}
