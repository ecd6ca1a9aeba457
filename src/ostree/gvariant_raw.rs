//! GVariant framing over already-serialized children: building and splitting tuples, arrays
//! and `v`s whose members are byte slices.
//!
//! Hand-written because a delta superblock embeds a commit object *verbatim* (its bytes, not a
//! re-serialization that could normalise away a key we do not model), carries inline parts as
//! `v`s of type `(yay)`, and is read back member by member; zgvariant (de)serializes whole
//! typed values only. The rules are GLib's gvariant-serialiser.c: members aligned relative to
//! the container start, end offsets of variable-size members (tuples: all but the last, stored
//! in reverse; arrays: every element, in order) appended in the smallest width that fits.

use anyhow::{Result, bail, ensure};

/// One member of a container: its serialized bytes, its alignment (1, 2, 4 or 8) and, for
/// fixed-size types, that size.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    /// The member's serialized bytes.
    pub bytes: &'a [u8],
    /// The member type's alignment: 1, 2, 4 or 8.
    pub align: usize,
    /// The size of a fixed-size type; None for a variable-size one, which needs an end offset.
    pub fixed: Option<usize>,
}

impl<'a> Member<'a> {
    /// A variable-size member (a string, array, `v`, or a tuple holding one).
    pub fn var(bytes: &'a [u8], align: usize) -> Member<'a> {
        Member {
            bytes,
            align,
            fixed: None,
        }
    }
    /// A fixed-size member: its size is `bytes.len()`.
    pub fn fixed(bytes: &'a [u8], align: usize) -> Member<'a> {
        Member {
            bytes,
            align,
            fixed: Some(bytes.len()),
        }
    }
}

/// A member's shape for [`split_tuple`]: alignment and fixed size (None if variable).
pub type Shape = (usize, Option<usize>);

fn pad_to(out: &mut Vec<u8>, align: usize) {
    while !out.len().is_multiple_of(align) {
        out.push(0);
    }
}

/// The framing-offset width GLib picks for a container with `body` bytes and `n` offsets.
fn offset_width(body: usize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    if body + n <= 0xff {
        1
    } else if body + 2 * n <= 0xffff {
        2
    } else if (body + 4 * n) as u64 <= 0xffff_ffff {
        4
    } else {
        8
    }
}

/// The width used to *read* the offsets of a container of `total` bytes.
fn read_width(total: usize) -> usize {
    if total <= 0xff {
        1
    } else if total <= 0xffff {
        2
    } else if total as u64 <= 0xffff_ffff {
        4
    } else {
        8
    }
}

fn put_offsets(out: &mut Vec<u8>, offsets: &[usize]) {
    let w = offset_width(out.len(), offsets.len());
    for &o in offsets {
        out.extend_from_slice(&(o as u64).to_le_bytes()[..w]);
    }
}

fn get_offset(bytes: &[u8], at: usize, w: usize) -> usize {
    let mut b = [0u8; 8];
    b[..w].copy_from_slice(&bytes[at..at + w]);
    u64::from_le_bytes(b) as usize
}

/// Serializes a tuple (or dict entry) from its members.
pub fn tuple(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(members.iter().map(|m| m.bytes.len() + 8).sum());
    let mut offsets = Vec::new();
    let max_align = members.iter().map(|m| m.align).max().unwrap_or(1);
    for (i, m) in members.iter().enumerate() {
        pad_to(&mut out, m.align);
        out.extend_from_slice(m.bytes);
        if m.fixed.is_none() && i + 1 < members.len() {
            offsets.push(out.len());
        }
    }
    if members.iter().all(|m| m.fixed.is_some()) {
        // A fixed-size tuple is padded to its alignment (and the unit tuple is one 0 byte).
        if out.is_empty() {
            out.push(0);
        }
        pad_to(&mut out, max_align);
        return out;
    }
    offsets.reverse();
    put_offsets(&mut out, &offsets);
    out
}

/// Serializes an array whose elements have alignment `align`; `fixed` says whether the
/// element type is fixed-size (then no offsets are written).
pub fn array<B: AsRef<[u8]>>(elems: &[B], align: usize, fixed: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::with_capacity(if fixed { 0 } else { elems.len() });
    for e in elems {
        pad_to(&mut out, align);
        out.extend_from_slice(e.as_ref());
        if !fixed {
            offsets.push(out.len());
        }
    }
    put_offsets(&mut out, &offsets);
    out
}

/// Serializes a `v`: the value, a NUL and its type string.
pub fn variant(value: &[u8], signature: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + signature.len() + 1);
    out.extend_from_slice(value);
    out.push(0);
    out.extend_from_slice(signature.as_bytes());
    out
}

/// A `s` value: the UTF-8 bytes and a NUL.
pub fn string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 1);
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    out
}

/// An `a{sv}` from (key, serialized value, value type) entries, in the given order.
pub fn asv(entries: &[(String, Vec<u8>, String)]) -> Vec<u8> {
    let items: Vec<Vec<u8>> = entries
        .iter()
        .map(|(k, v, sig)| {
            let key = string(k);
            let var = variant(v, sig);
            tuple(&[Member::var(&key, 1), Member::var(&var, 8)])
        })
        .collect();
    array(&items, 8, false)
}

/// Splits a serialized tuple into its members' bytes, given each member's shape.
pub fn split_tuple<'a>(bytes: &'a [u8], shapes: &[Shape]) -> Result<Vec<&'a [u8]>> {
    let total = bytes.len();
    let w = read_width(total);
    let mut out = Vec::with_capacity(shapes.len());
    let mut pos = 0usize;
    // Offsets are read from the end backwards, one per variable-size non-last member.
    let mut offsets_end = total;
    for (i, &(align, fixed)) in shapes.iter().enumerate() {
        let start = pos.next_multiple_of(align);
        let end = match fixed {
            Some(n) => start + n,
            None if i + 1 == shapes.len() => offsets_end,
            None => {
                ensure!(offsets_end >= w, "truncated framing offsets");
                offsets_end -= w;
                get_offset(bytes, offsets_end, w)
            }
        };
        if start > end || end > offsets_end {
            bail!("member {i} is out of bounds ({start}..{end} of {total} bytes)");
        }
        out.push(&bytes[start..end]);
        pos = end;
    }
    Ok(out)
}

/// Splits a serialized array into its elements, given their alignment and fixed size.
pub fn split_array(bytes: &[u8], align: usize, fixed: Option<usize>) -> Result<Vec<&[u8]>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(n) = fixed {
        ensure!(
            n > 0 && bytes.len().is_multiple_of(n),
            "array of {n}-byte elements has {} bytes",
            bytes.len()
        );
        return Ok(bytes.chunks(n).collect());
    }
    let total = bytes.len();
    let w = read_width(total);
    ensure!(total >= w, "truncated array");
    let offsets_start = get_offset(bytes, total - w, w);
    ensure!(
        offsets_start <= total && (total - offsets_start).is_multiple_of(w),
        "invalid array framing"
    );
    let n = (total - offsets_start) / w;
    let mut out = Vec::with_capacity(n);
    let mut pos = 0usize;
    for i in 0..n {
        let end = get_offset(bytes, offsets_start + i * w, w);
        let start = pos.next_multiple_of(align);
        ensure!(
            start <= end && end <= offsets_start,
            "array element {i} is out of bounds"
        );
        out.push(&bytes[start..end]);
        pos = end;
    }
    Ok(out)
}

/// Splits a `v` into its value bytes and type string.
pub fn split_variant(bytes: &[u8]) -> Result<(&[u8], &str)> {
    let nul = bytes
        .iter()
        .rposition(|&b| b == 0)
        .ok_or_else(|| anyhow::anyhow!("variant without a type string"))?;
    let sig = std::str::from_utf8(&bytes[nul + 1..])?;
    Ok((&bytes[..nul], sig))
}

/// Reads an `a{sv}` into (key, value bytes, type string) entries.
pub fn split_asv(bytes: &[u8]) -> Result<Vec<(String, &[u8], String)>> {
    let mut out = Vec::new();
    for entry in split_array(bytes, 8, None)? {
        let parts = split_tuple(entry, &[(1, None), (8, None)])?;
        let key = parts[0]
            .strip_suffix(&[0])
            .ok_or_else(|| anyhow::anyhow!("dictionary key without NUL"))?;
        let (value, sig) = split_variant(parts[1])?;
        out.push((String::from_utf8(key.to_vec())?, value, sig.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ostree::gvariant::{self, ADict, MetaValue};

    #[test]
    fn asv_matches_zgvariant_and_splits_back() {
        let entries = vec![
            ("a".to_string(), MetaValue::Str("x".into())),
            ("bb".to_string(), MetaValue::Bytes(vec![1, 2, 3])),
            ("t".to_string(), MetaValue::U64(7)),
        ];
        let z = gvariant::to_bytes(&ADict(&entries)).unwrap();
        let raw = asv(&[
            ("a".into(), string("x"), "s".into()),
            ("bb".into(), vec![1, 2, 3], "ay".into()),
            ("t".into(), 7u64.to_le_bytes().to_vec(), "t".into()),
        ]);
        assert_eq!(z, raw);
        let back = split_asv(&raw).unwrap();
        assert_eq!(back[1].0, "bb");
        assert_eq!(back[1].1, &[1, 2, 3]);
        assert_eq!(back[2].2, "t");
    }

    #[test]
    fn tuple_matches_zgvariant_across_offset_widths() {
        for n in [3usize, 250, 300, 70_000] {
            let a = vec![7u8; n];
            let z = gvariant::to_bytes(&(
                serde_bytes::Bytes::new(&a),
                5u64,
                "s",
                serde_bytes::Bytes::new(&a),
            ))
            .unwrap();
            let s = string("s");
            let t = 5u64.to_le_bytes();
            let raw = tuple(&[
                Member::var(&a, 1),
                Member::fixed(&t, 8),
                Member::var(&s, 1),
                Member::var(&a, 1),
            ]);
            assert_eq!(z, raw, "n={n}");
            let parts =
                split_tuple(&raw, &[(1, None), (8, Some(8)), (1, None), (1, None)]).unwrap();
            assert_eq!(parts[0], &a[..]);
            assert_eq!(parts[2], b"s\0");
            assert_eq!(parts[3], &a[..]);
        }
    }
}
