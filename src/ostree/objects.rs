//! Object types and their byte layouts: dirmeta, dirtree, commit, content headers and the
//! archive `.filez` header (docs/ostree-formats.md §2–§3), serialized with zgvariant.

use anyhow::{Context as _, Result, bail, ensure};
use serde_bytes::{ByteBuf, Bytes};
use sha2::{Digest, Sha256};

use super::checksum::Checksum;
use super::gvariant::{self, ADict, Metadata, OwnedADict};

/// The file-type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// `st_mode` file type of a regular file.
pub const S_IFREG: u32 = 0o100000;
/// `st_mode` file type of a symlink.
pub const S_IFLNK: u32 = 0o120000;
/// `st_mode` file type of a directory.
pub const S_IFDIR: u32 = 0o040000;

/// The kinds of objects in a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// A content object (regular file or symlink); `.filez` in archive repos.
    File,
    /// A directory listing: names of files and subdirectories with their checksums.
    DirTree,
    /// A directory's ownership, mode and xattrs.
    DirMeta,
    /// A commit: root tree, parent, subject, body, timestamp and metadata.
    Commit,
    /// Detached commit metadata (`.commitmeta`).
    CommitMeta,
}

impl ObjectType {
    /// The loose-object file extension in an archive-z2 repository.
    pub fn extension(self) -> &'static str {
        match self {
            ObjectType::File => "filez",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::Commit => "commit",
            ObjectType::CommitMeta => "commitmeta",
        }
    }
}

/// Extended attributes: (name without the NUL, value).
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Ownership, mode and xattrs of a content object (regular file or symlink).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FileMeta {
    /// Owner user id (stored big-endian).
    pub uid: u32,
    /// Owner group id (stored big-endian).
    pub gid: u32,
    /// Full `st_mode`: S_IFREG or S_IFLNK plus permission bits.
    pub mode: u32,
    /// Extended attributes, in any order (sorted when written).
    pub xattrs: Xattrs,
}

/// Ownership, mode and xattrs of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DirMeta {
    /// Owner user id (stored big-endian).
    pub uid: u32,
    /// Owner group id (stored big-endian).
    pub gid: u32,
    /// S_IFDIR | permission bits.
    pub mode: u32,
    /// Extended attributes, in any order (sorted when written).
    pub xattrs: Xattrs,
}

/// A parsed dirtree: files `(name, content checksum)` and subdirectories
/// `(name, dirtree checksum, dirmeta checksum)`, each sorted by name bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DirTree {
    /// Regular files and symlinks: `(name, content checksum)`.
    pub files: Vec<(String, Checksum)>,
    /// Subdirectories: `(name, dirtree checksum, dirmeta checksum)`.
    pub dirs: Vec<(String, Checksum, Checksum)>,
}

/// What to write as a commit object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitSpec {
    /// The parent commit; None for a commit without history.
    pub parent: Option<Checksum>,
    /// One-line subject.
    pub subject: String,
    /// Full description.
    pub body: String,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// The dirtree of the root directory.
    pub root_dirtree: Checksum,
    /// The dirmeta of the root directory.
    pub root_dirmeta: Checksum,
    /// The commit's `a{sv}` metadata, written in this order.
    pub metadata: Metadata,
}

/// A commit object read back from a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The parent commit; None for a commit without history.
    pub parent: Option<Checksum>,
    /// One-line subject.
    pub subject: String,
    /// Full description.
    pub body: String,
    /// Seconds since the epoch, UTC (stored big-endian).
    pub timestamp: u64,
    /// The dirtree of the root directory.
    pub root_dirtree: Checksum,
    /// The dirmeta of the root directory.
    pub root_dirmeta: Checksum,
    /// Keys in on-disk order; numbers are read as host order (`MetaValue::U64`).
    pub metadata: Metadata,
}

/// Sorts xattrs as libglnx does (strcmp on the names) and adds the NUL to each name.
fn xattrs_for_disk(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(ByteBuf, ByteBuf)> {
    let mut v: Vec<(ByteBuf, ByteBuf)> = xattrs
        .iter()
        .map(|(n, val)| {
            let mut name = n.clone();
            name.push(0);
            (ByteBuf::from(name), ByteBuf::from(val.clone()))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The `a(ayay)` bytes of xattrs as a file header stores them (sorted, names NUL-terminated).
pub fn xattrs_bytes(xattrs: &Xattrs) -> Result<Vec<u8>> {
    gvariant::to_bytes(&xattrs_for_disk(xattrs))
}

fn xattrs_from_disk(v: Vec<(ByteBuf, ByteBuf)>) -> Xattrs {
    v.into_iter()
        .map(|(n, val)| {
            let mut name = n.into_vec();
            if name.last() == Some(&0) {
                name.pop();
            }
            (name, val.into_vec())
        })
        .collect()
}

type DirMetaWire = (u32, u32, u32, Vec<(ByteBuf, ByteBuf)>);

/// The dirmeta object bytes `(uuua(ayay))`, numbers big-endian.
pub fn dirmeta_bytes(meta: &DirMeta) -> Result<Vec<u8>> {
    ensure!(
        meta.mode & S_IFMT == S_IFDIR && meta.mode & !(S_IFMT | 0o7777) == 0,
        "invalid directory mode {:o}",
        meta.mode
    );
    let wire: DirMetaWire = (
        meta.uid.to_be(),
        meta.gid.to_be(),
        meta.mode.to_be(),
        xattrs_for_disk(&meta.xattrs),
    );
    gvariant::to_bytes(&wire)
}

/// Parses a dirmeta object `(uuua(ayay))`.
pub fn parse_dirmeta(bytes: &[u8]) -> Result<DirMeta> {
    let (uid, gid, mode, x): DirMetaWire = gvariant::from_bytes(bytes)?;
    let meta = DirMeta {
        uid: u32::from_be(uid),
        gid: u32::from_be(gid),
        mode: u32::from_be(mode),
        xattrs: xattrs_from_disk(x),
    };
    ensure!(
        meta.mode & S_IFMT == S_IFDIR,
        "dirmeta mode {:o} is not a directory",
        meta.mode
    );
    Ok(meta)
}

/// The dirtree object bytes `(a(say)a(sayay))`; entries are sorted here by name bytes.
pub fn dirtree_bytes(tree: &DirTree) -> Result<Vec<u8>> {
    let mut files: Vec<(&str, &Bytes)> = tree
        .files
        .iter()
        .map(|(n, c)| (n.as_str(), Bytes::new(c.as_bytes())))
        .collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut dirs: Vec<(&str, &Bytes, &Bytes)> = tree
        .dirs
        .iter()
        .map(|(n, t, m)| {
            (
                n.as_str(),
                Bytes::new(t.as_bytes()),
                Bytes::new(m.as_bytes()),
            )
        })
        .collect();
    dirs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    gvariant::to_bytes(&(files, dirs))
}

type DirTreeWire = (Vec<(String, ByteBuf)>, Vec<(String, ByteBuf, ByteBuf)>);

/// Parses a dirtree object; names that are empty, `.`, `..` or contain `/` are errors.
pub fn parse_dirtree(bytes: &[u8]) -> Result<DirTree> {
    let (files, dirs): DirTreeWire = gvariant::from_bytes(bytes)?;
    let mut out = DirTree::default();
    for (name, c) in files {
        validate_filename(&name)?;
        out.files.push((name, Checksum::from_slice(&c)?));
    }
    for (name, t, m) in dirs {
        validate_filename(&name)?;
        out.dirs
            .push((name, Checksum::from_slice(&t)?, Checksum::from_slice(&m)?));
    }
    Ok(out)
}

/// `ot_util_filename_validate`: not empty, not `.`/`..`, no `/`.
pub fn validate_filename(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        bail!("invalid file name '{name}' in tree");
    }
    Ok(())
}

/// The commit object bytes `(a{sv}aya(say)sstayay)`.
pub fn commit_bytes(c: &CommitSpec) -> Result<Vec<u8>> {
    let parent: &[u8] = match &c.parent {
        Some(p) => p.as_bytes(),
        None => &[],
    };
    let related: Vec<(&str, &Bytes)> = Vec::new();
    let wire = (
        ADict(&c.metadata),
        Bytes::new(parent),
        related,
        c.subject.as_str(),
        c.body.as_str(),
        c.timestamp.to_be(),
        Bytes::new(c.root_dirtree.as_bytes()),
        Bytes::new(c.root_dirmeta.as_bytes()),
    );
    gvariant::to_bytes(&wire)
}

type CommitWire = (
    OwnedADict,
    ByteBuf,
    Vec<(String, ByteBuf)>,
    String,
    String,
    u64,
    ByteBuf,
    ByteBuf,
);

/// Parses a commit object.
pub fn parse_commit(bytes: &[u8]) -> Result<Commit> {
    let (meta, parent, _related, subject, body, ts, tree, dmeta): CommitWire =
        gvariant::from_bytes(bytes)?;
    let parent = if parent.is_empty() {
        None
    } else {
        Some(Checksum::from_slice(&parent)?)
    };
    Ok(Commit {
        parent,
        subject,
        body,
        timestamp: u64::from_be(ts),
        root_dirtree: Checksum::from_slice(&tree).context("root dirtree")?,
        root_dirmeta: Checksum::from_slice(&dmeta).context("root dirmeta")?,
        metadata: meta.0,
    })
}

fn check_content_mode(mode: u32) -> Result<()> {
    let fmt = mode & S_IFMT;
    ensure!(
        (fmt == S_IFREG || fmt == S_IFLNK) && mode & !(S_IFMT | 0o7777) == 0,
        "invalid content object mode {mode:o}"
    );
    Ok(())
}

/// The content header `(uuuusa(ayay))` that the content checksum covers.
pub fn file_header(meta: &FileMeta, symlink: &str) -> Result<Vec<u8>> {
    check_content_mode(meta.mode)?;
    let wire = (
        meta.uid.to_be(),
        meta.gid.to_be(),
        meta.mode.to_be(),
        0u32,
        symlink,
        xattrs_for_disk(&meta.xattrs),
    );
    gvariant::to_bytes(&wire)
}

/// The archive header `(tuuuusa(ayay))` with its 8-byte length prefix: the start of a `.filez`.
pub fn filez_header(meta: &FileMeta, symlink: &str, size: u64) -> Result<Vec<u8>> {
    check_content_mode(meta.mode)?;
    let wire = (
        size.to_be(),
        meta.uid.to_be(),
        meta.gid.to_be(),
        meta.mode.to_be(),
        0u32,
        symlink,
        xattrs_for_disk(&meta.xattrs),
    );
    let v = gvariant::to_bytes(&wire)?;
    let mut out = Vec::with_capacity(8 + v.len());
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&v);
    Ok(out)
}

/// A SHA-256 primed with the length-prefixed content header; feed it the file bytes next.
pub fn content_hasher(meta: &FileMeta, symlink: &str) -> Result<Sha256> {
    let header = file_header(meta, symlink)?;
    let mut h = Sha256::new();
    h.update((header.len() as u32).to_be_bytes());
    h.update([0u8; 4]);
    h.update(&header);
    Ok(h)
}

type FilezWire = (u64, u32, u32, u32, u32, String, Vec<(ByteBuf, ByteBuf)>);

/// Parses the start of a `.filez`: returns (meta, symlink target or "", size, header length
/// including the 8-byte prefix, i.e. where the deflate stream starts).
pub fn parse_filez_header(bytes: &[u8]) -> Result<(FileMeta, String, u64, usize)> {
    ensure!(bytes.len() >= 8, "content object too short");
    let n = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    ensure!(bytes.len() >= 8 + n, "content object header truncated");
    let (size, uid, gid, mode, rdev, target, x): FilezWire =
        gvariant::from_bytes(&bytes[8..8 + n])?;
    ensure!(rdev == 0, "content object has rdev != 0");
    let meta = FileMeta {
        uid: u32::from_be(uid),
        gid: u32::from_be(gid),
        mode: u32::from_be(mode),
        xattrs: xattrs_from_disk(x),
    };
    check_content_mode(meta.mode)?;
    Ok((meta, target, u64::from_be(size), 8 + n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ostree::gvariant::MetaValue;

    /// The objects fuzzer's find: a dirtree whose entries are not sorted. Reading keeps its
    /// order; writing sorts by name as ostree does, and the result is then a fixed point.
    #[test]
    fn an_unsorted_dirtree_is_written_sorted_and_then_stays_put() {
        let input = std::fs::read(crate::fsutil::fuzz_regression(
            "ostree_objects-unsorted-dirtree",
        ))
        .unwrap();
        let t = parse_dirtree(&input).unwrap();
        let names: Vec<&str> = t.dirs.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, ["etc", ")sr"]);
        let written = dirtree_bytes(&t).unwrap();
        let t2 = parse_dirtree(&written).unwrap();
        let names: Vec<&str> = t2.dirs.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, [")sr", "etc"]);
        assert_eq!(t2.dirs[1], t.dirs[0]);
        assert_eq!(dirtree_bytes(&t2).unwrap(), written);
    }

    fn hx(b: &[u8]) -> String {
        hex::encode(b)
    }

    #[test]
    fn ubiquitous_dirmeta() {
        let b = dirmeta_bytes(&DirMeta {
            uid: 0,
            gid: 0,
            mode: 0o40755,
            xattrs: vec![],
        })
        .unwrap();
        assert_eq!(hx(&b), "0000000000000000000041ed");
        assert_eq!(
            Checksum::of(&b).to_hex(),
            "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488"
        );
        assert_eq!(parse_dirmeta(&b).unwrap().mode, 0o40755);
    }

    #[test]
    fn empty_dirtree() {
        let b = dirtree_bytes(&DirTree::default()).unwrap();
        assert_eq!(b, vec![0]);
        assert_eq!(
            Checksum::of(&b).to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn hello_content_checksum_and_filez() {
        let meta = FileMeta {
            uid: 0,
            gid: 0,
            mode: 0o100644,
            xattrs: vec![
                (b"user.zeta".to_vec(), b"z".to_vec()),
                (b"user.alpha".to_vec(), b"value1".to_vec()),
            ],
        };
        let mut h = content_hasher(&meta, "").unwrap();
        h.update(b"hello\n");
        assert_eq!(
            hex::encode(h.finalize()),
            "59398046d180cb4d705478b2f72a1a0b6276f2d032ae3264ecb018ab1d31765b"
        );
        let fz = filez_header(&meta, "", 6).unwrap();
        assert_eq!(fz.len(), 66);
        assert_eq!(hx(&fz[..8]), "0000003a00000000");
        let (m, t, size, off) = parse_filez_header(&fz).unwrap();
        assert_eq!((t.as_str(), size, off), ("", 6, 66));
        assert_eq!(m.xattrs[0].0, b"user.alpha");

        let plain = FileMeta {
            uid: 0,
            gid: 0,
            mode: 0o100644,
            xattrs: vec![],
        };
        let mut h = content_hasher(&plain, "").unwrap();
        h.update(b"hello\n");
        assert_eq!(
            hex::encode(h.finalize()),
            "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b"
        );
        let link = FileMeta {
            uid: 0,
            gid: 0,
            mode: 0o120777,
            xattrs: vec![],
        };
        assert_eq!(filez_header(&link, "hello.txt", 0).unwrap().len(), 43);
    }

    #[test]
    fn documented_commit_bytes() {
        let spec = CommitSpec {
            parent: None,
            subject: "Test subject".into(),
            body: "Body text".into(),
            timestamp: 1704164645,
            root_dirtree: Checksum([0xd2; 32]),
            root_dirmeta: Checksum([0x44; 32]),
            metadata: vec![(
                "ostree.ref-binding".into(),
                MetaValue::StrList(vec!["test/x86_64".into()]),
            )],
        };
        let b = commit_bytes(&spec).unwrap();
        assert_eq!(b.len(), 150);
        assert_eq!(hx(&b[0x13..0x18]), "0000000000");
        assert_eq!(hx(&b[0x48..0x50]), "0000000065937d25");
        assert_eq!(hx(&b[0x90..]), "7041372a2a2a");
        let back = parse_commit(&b).unwrap();
        assert_eq!(back.timestamp, spec.timestamp);
        assert_eq!(back.metadata, spec.metadata);
        assert_eq!(back.root_dirtree, spec.root_dirtree);
    }
}
