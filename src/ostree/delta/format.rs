//! The byte layouts of a static delta: its name and paths, the superblock and the part
//! payloads (docs/ostree-static-deltas.md), written and parsed.
//!
//! Layouts follow libostree's ostree-repo-static-delta-private.h; every number ostree calls
//! "non-canonical endian" is written little-endian and the superblock says so with
//! `ostree.endianness` = `'l'`, exactly as ostree does on x86.

use std::io::Read as _;

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;

use crate::ostree::checksum::Checksum;
use crate::ostree::gvariant_raw::{self as raw, Member};
use crate::ostree::objects::ObjectType;
use crate::ostree::traverse::ObjectName;

/// `OSTREE_DELTAPART_VERSION`.
pub const PART_VERSION: u32 = 0;
/// `OSTREE_STATIC_DELTA_SIGNED_MAGIC` ("OSTSGNDT"), stored big-endian.
const SIGNED_MAGIC: u64 = 0x4F53_5453_474E_4454;

/// The wire number of an object type (`OstreeObjectType`).
pub fn objtype_byte(t: ObjectType) -> u8 {
    match t {
        ObjectType::File => 1,
        ObjectType::DirTree => 2,
        ObjectType::DirMeta => 3,
        ObjectType::Commit => 4,
        ObjectType::CommitMeta => 6,
    }
}

/// The object type for its wire number; fails on an unknown number.
pub fn objtype_from_byte(b: u8) -> Result<ObjectType> {
    Ok(match b {
        1 => ObjectType::File,
        2 => ObjectType::DirTree,
        3 => ObjectType::DirMeta,
        4 => ObjectType::Commit,
        6 => ObjectType::CommitMeta,
        _ => bail!("invalid object type {b} in delta"),
    })
}

/// ostree's "modified base64" of a checksum: standard alphabet, `/` → `_`, no padding.
pub fn b64(c: &Checksum) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(c.as_bytes())
        .replace('/', "_")
}

/// Parses ostree's modified base64 (see [`b64`]) back into a checksum.
pub fn from_b64(s: &str) -> Result<Checksum> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.replace('_', "/"))
        .with_context(|| format!("'{s}' is not a modified-base64 checksum"))?;
    Checksum::from_slice(&bytes)
}

/// A delta's endpoints: `from` is None for a from-scratch (`--empty`) delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeltaName {
    /// The commit the delta starts from; None for a from-scratch delta.
    pub from: Option<Checksum>,
    /// The commit the delta produces.
    pub to: Checksum,
}

impl DeltaName {
    /// Parses `FROM-TO` or `TO` (64-hex checksums), as `ostree static-delta show` takes them.
    pub fn parse(id: &str) -> Result<DeltaName> {
        match id.split_once('-') {
            Some((f, t)) => Ok(DeltaName {
                from: Some(f.parse().with_context(|| format!("delta name '{id}'"))?),
                to: t.parse().with_context(|| format!("delta name '{id}'"))?,
            }),
            None => Ok(DeltaName {
                from: None,
                to: id.parse().with_context(|| format!("delta name '{id}'"))?,
            }),
        }
    }

    /// `FROM-TO` or `TO`: the name in `static-delta list` and the summary.
    pub fn id(&self) -> String {
        match &self.from {
            Some(f) => format!("{f}-{}", self.to),
            None => self.to.to_hex(),
        }
    }

    /// `deltas/FF/ROM-TO` or `deltas/TO/...` relative to the repository (`static_delta_path_base`).
    pub fn rel_dir(&self) -> String {
        let to = b64(&self.to);
        match &self.from {
            Some(f) => {
                let f = b64(f);
                format!("deltas/{}/{}-{to}", &f[..2], &f[2..])
            }
            None => format!("deltas/{}/{}", &to[..2], &to[2..]),
        }
    }

    /// The superblock's path relative to the repository.
    pub fn superblock_rel(&self) -> String {
        format!("{}/superblock", self.rel_dir())
    }

    /// Path of part `i` relative to the repository; also its key when the part is inline.
    pub fn part_rel(&self, i: usize) -> String {
        format!("{}/{i}", self.rel_dir())
    }
}

/// `delta-indexes/XX/REST.index` for deltas ending at `to`.
pub fn index_rel(to: &Checksum) -> String {
    let t = b64(to);
    format!("delta-indexes/{}/{}.index", &t[..2], &t[2..])
}

/// One entry of the superblock's part list `(uayttay)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartHeader {
    /// The part format version; [`PART_VERSION`] is the only one.
    pub version: u32,
    /// sha256 of the part file bytes (compression byte included).
    pub checksum: Checksum,
    /// Part file size.
    pub size: u64,
    /// Total size of the objects the part creates.
    pub usize: u64,
    /// The objects the part creates.
    pub objects: Vec<ObjectName>,
}

/// An object the client fetches on its own `(yaytt)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The object to fetch.
    pub object: ObjectName,
    /// Size of the object's file in the repository (compressed in archive mode).
    pub size: u64,
    /// Uncompressed size of the object.
    pub usize: u64,
}

/// A parsed or to-be-written superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// `a{sv}` entries: key, value bytes, value type. Inline parts and the detached
    /// metadata of the target commit live here.
    pub metadata: Vec<(String, Vec<u8>, String)>,
    /// Seconds since the epoch (stored big-endian).
    pub timestamp: u64,
    /// The commit the delta starts from; None for a from-scratch delta.
    pub from: Option<Checksum>,
    /// The target commit.
    pub to: Checksum,
    /// The target commit object, verbatim.
    pub commit: Vec<u8>,
    /// The parts, in the order they are applied.
    pub parts: Vec<PartHeader>,
    /// Objects left out of the parts, which the client fetches on its own.
    pub fallbacks: Vec<Fallback>,
    /// True when the delta's numbers are big-endian (an `ostree.endianness` of `'B'`).
    pub big_endian: bool,
    /// True when the file was a signed wrapper `(taya{sv})` around the superblock.
    pub signed: bool,
}

fn objects_array(objects: &[ObjectName]) -> Vec<u8> {
    let mut out = Vec::with_capacity(objects.len() * 33);
    for (c, t) in objects {
        out.push(objtype_byte(*t));
        out.extend_from_slice(c.as_bytes());
    }
    out
}

fn parse_objects_array(b: &[u8]) -> Result<Vec<ObjectName>> {
    ensure!(
        b.len().is_multiple_of(33),
        "invalid checksum array length {}",
        b.len()
    );
    b.chunks(33)
        .map(|c| Ok((Checksum::from_slice(&c[1..])?, objtype_from_byte(c[0])?)))
        .collect()
}

fn u64_at(b: &[u8], swap: bool) -> Result<u64> {
    let v = u64::from_le_bytes(b.try_into().context("expected 8 bytes")?);
    Ok(if swap { v.swap_bytes() } else { v })
}

/// The superblock `(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))` bytes.
pub fn superblock_bytes(sb: &Superblock) -> Vec<u8> {
    let meta = raw::asv(&sb.metadata);
    let ts = sb.timestamp.to_be_bytes();
    let from = sb.from.map(|c| c.0.to_vec()).unwrap_or_default();
    let parts: Vec<Vec<u8>> = sb
        .parts
        .iter()
        .map(|p| {
            let objs = objects_array(&p.objects);
            raw::tuple(&[
                Member::fixed(&p.version.to_le_bytes(), 4),
                Member::var(p.checksum.as_bytes(), 1),
                Member::fixed(&p.size.to_le_bytes(), 8),
                Member::fixed(&p.usize.to_le_bytes(), 8),
                Member::var(&objs, 1),
            ])
        })
        .collect();
    let fallbacks: Vec<Vec<u8>> = sb
        .fallbacks
        .iter()
        .map(|f| {
            raw::tuple(&[
                Member::fixed(&[objtype_byte(f.object.1)], 1),
                Member::var(f.object.0.as_bytes(), 1),
                Member::fixed(&f.size.to_le_bytes(), 8),
                Member::fixed(&f.usize.to_le_bytes(), 8),
            ])
        })
        .collect();
    let parts = raw::array(&parts, 8, false);
    let fallbacks = raw::array(&fallbacks, 8, false);
    raw::tuple(&[
        Member::var(&meta, 8),
        Member::fixed(&ts, 8),
        Member::var(&from, 1),
        Member::var(sb.to.as_bytes(), 1),
        Member::var(&sb.commit, 8),
        Member::var(&[], 1),
        Member::var(&parts, 8),
        Member::var(&fallbacks, 8),
    ])
}

/// Parses a superblock file (plain, or the signed wrapper ostree writes with `--sign`).
pub fn parse_superblock(bytes: &[u8]) -> Result<Superblock> {
    let mut signed = false;
    let mut bytes = bytes;
    if bytes.len() >= 8 && u64::from_be_bytes(bytes[..8].try_into().unwrap()) == SIGNED_MAGIC {
        let m = raw::split_tuple(bytes, &[(8, Some(8)), (1, None), (8, None)])
            .context("invalid signed superblock wrapper")?;
        bytes = m[1];
        signed = true;
    }
    let m = raw::split_tuple(
        bytes,
        &[
            (8, None),
            (8, Some(8)),
            (1, None),
            (1, None),
            (8, None),
            (1, None),
            (8, None),
            (8, None),
        ],
    )?;
    let metadata: Vec<(String, Vec<u8>, String)> = raw::split_asv(m[0])
        .context("superblock metadata")?
        .into_iter()
        .map(|(k, v, s)| (k, v.to_vec(), s))
        .collect();
    let big_endian = metadata
        .iter()
        .find(|(k, _, s)| k == "ostree.endianness" && s == "y")
        .map(|(_, v, _)| v.first() == Some(&b'B'))
        .unwrap_or(false);
    let swap = big_endian;
    let timestamp = u64::from_be_bytes(m[1].try_into().context("timestamp")?);
    let from = if m[2].is_empty() {
        None
    } else {
        Some(Checksum::from_slice(m[2]).context("from checksum")?)
    };
    let to = Checksum::from_slice(m[3]).context("to checksum")?;
    crate::ostree::objects::parse_commit(m[4]).context("embedded commit object")?;
    let mut parts = Vec::new();
    for (i, e) in raw::split_array(m[6], 8, None)?.into_iter().enumerate() {
        let f = raw::split_tuple(
            e,
            &[
                (4, Some(4)),
                (1, None),
                (8, Some(8)),
                (8, Some(8)),
                (1, None),
            ],
        )
        .with_context(|| format!("part header {i}"))?;
        let v = u32::from_le_bytes(f[0].try_into().unwrap());
        parts.push(PartHeader {
            version: if swap { v.swap_bytes() } else { v },
            checksum: Checksum::from_slice(f[1]).with_context(|| format!("part {i} checksum"))?,
            size: u64_at(f[2], swap)?,
            usize: u64_at(f[3], swap)?,
            objects: parse_objects_array(f[4]).with_context(|| format!("part {i} objects"))?,
        });
    }
    let mut fallbacks = Vec::new();
    for (i, e) in raw::split_array(m[7], 8, None)?.into_iter().enumerate() {
        let f = raw::split_tuple(e, &[(1, Some(1)), (1, None), (8, Some(8)), (8, Some(8))])
            .with_context(|| format!("fallback {i}"))?;
        fallbacks.push(Fallback {
            object: (
                Checksum::from_slice(f[1]).with_context(|| format!("fallback {i} checksum"))?,
                objtype_from_byte(f[0][0])?,
            ),
            size: u64_at(f[2], swap)?,
            usize: u64_at(f[3], swap)?,
        });
    }
    Ok(Superblock {
        metadata,
        timestamp,
        from,
        to,
        commit: m[4].to_vec(),
        parts,
        fallbacks,
        big_endian,
        signed,
    })
}

/// A decoded part payload `(a(uuu)aa(ayay)ayay)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartPayload {
    /// (uid, gid, mode), host values (stored big-endian).
    pub modes: Vec<(u32, u32, u32)>,
    /// Each element: a serialized `a(ayay)` xattr list, as in a file header.
    pub xattrs: Vec<Vec<u8>>,
    /// Literal bytes that opcodes copy out by `(offset, length)`.
    pub payload: Vec<u8>,
    /// The opcode stream (see the `bytecode` module), arguments as varints.
    pub ops: Vec<u8>,
}

/// Serializes a part payload, before compression and the leading compression byte.
pub fn part_payload_bytes(p: &PartPayload) -> Vec<u8> {
    let modes: Vec<[u8; 12]> = p
        .modes
        .iter()
        .map(|(u, g, m)| {
            let mut b = [0u8; 12];
            b[..4].copy_from_slice(&u.to_be_bytes());
            b[4..8].copy_from_slice(&g.to_be_bytes());
            b[8..].copy_from_slice(&m.to_be_bytes());
            b
        })
        .collect();
    let modes = raw::array(&modes, 4, true);
    let xattrs = raw::array(&p.xattrs, 1, false);
    raw::tuple(&[
        Member::var(&modes, 4),
        Member::var(&xattrs, 1),
        Member::var(&p.payload, 1),
        Member::var(&p.ops, 1),
    ])
}

/// Parses an uncompressed part payload (the inverse of [`part_payload_bytes`]).
pub fn parse_part_payload(b: &[u8]) -> Result<PartPayload> {
    let m = raw::split_tuple(b, &[(4, None), (1, None), (1, None), (1, None)])?;
    let modes = raw::split_array(m[0], 4, Some(12))?
        .into_iter()
        .map(|e| {
            let u = |i: usize| u32::from_be_bytes(e[i..i + 4].try_into().unwrap());
            (u(0), u(4), u(8))
        })
        .collect();
    let xattrs = raw::split_array(m[1], 1, None)?
        .into_iter()
        .map(|e| e.to_vec())
        .collect();
    Ok(PartPayload {
        modes,
        xattrs,
        payload: m[2].to_vec(),
        ops: m[3].to_vec(),
    })
}

/// Opens a part file's bytes (compression byte + data) into its payload.
pub fn decode_part(bytes: &[u8]) -> Result<PartPayload> {
    ensure!(!bytes.is_empty(), "empty delta part");
    let body = match bytes[0] {
        0 => bytes[1..].to_vec(),
        b'x' => {
            let mut out = Vec::new();
            liblzma::read::XzDecoder::new(&bytes[1..])
                .read_to_end(&mut out)
                .context("decompressing the lzma delta part")?;
            out
        }
        c => bail!("invalid compression type '{c}' in delta part"),
    };
    parse_part_payload(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64_round_trip_and_paths() {
        let c: Checksum = "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00"
            .parse()
            .unwrap();
        let s = b64(&c);
        assert_eq!(s.len(), 43);
        assert!(s.contains('_') && !s.contains('/'));
        assert_eq!(from_b64(&s).unwrap(), c);
        let n = DeltaName { from: None, to: c };
        assert_eq!(n.rel_dir(), format!("deltas/{}/{}", &s[..2], &s[2..]));
        assert_eq!(DeltaName::parse(&n.id()).unwrap(), n);
    }
}
