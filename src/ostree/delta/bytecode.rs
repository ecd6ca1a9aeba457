//! The delta part bytecode (ostree-repo-static-delta-processing.c): opcodes, their varint
//! arguments (protobuf-style LEB128, `ostree-varint.c`) and a walker that counts them.

use anyhow::{Result, bail, ensure};

use super::format::PartPayload;
use crate::ostree::objects::ObjectType;
use crate::ostree::traverse::ObjectName;

/// Writes the next object whole: metadata `(len, offset)`, content
/// `(mode index, xattr index, size, offset)`.
pub const OPEN_SPLICE_AND_CLOSE: u8 = b'S';
/// Starts a content object `(mode index, xattr index, size)` (bare clients only).
pub const OPEN: u8 = b'o';
/// Appends `(size, offset)` from the payload, or from the read source when one is set.
pub const WRITE: u8 = b'w';
/// Reads from an existing object named by 32 checksum bytes at `(offset)` in the payload.
pub const SET_READ_SOURCE: u8 = b'r';
/// Forgets the read source: later `WRITE`s read from the payload again.
pub const UNSET_READ_SOURCE: u8 = b'R';
/// Finishes the open object.
pub const CLOSE: u8 = b'c';
/// Writes the open object by applying the bsdiff patch at `(offset, length)` to the source.
pub const BSPATCH: u8 = b'B';

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low group first).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Reads the varint at `*pos` and moves `pos` past it; fails on a truncated or over-long one.
pub fn get_varint(ops: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        ensure!(*pos < ops.len(), "Unexpected EOF reading varint");
        let b = ops[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint longer than 64 bits")
}

/// Counts executed opcodes in ostree's order: open-splice-and-close, open, write, set-read,
/// unset-read, close, bspatch; checks that every argument lies inside the payload.
pub fn count_ops(part: &PartPayload, objects: &[ObjectName]) -> Result<[u32; 7]> {
    let mut n = [0u32; 7];
    let ops = &part.ops;
    let plen = part.payload.len() as u64;
    let in_payload = |off: u64, len: u64| -> Result<()> {
        ensure!(
            off.checked_add(len).is_some_and(|e| e <= plen),
            "Invalid offset/length {off}/{len}"
        );
        Ok(())
    };
    let mut pos = 0usize;
    let mut index = 0usize;
    let mut reading_source = false;
    while pos < ops.len() {
        let op = ops[pos];
        pos += 1;
        match op {
            OPEN_SPLICE_AND_CLOSE => {
                let (_, t) = objects
                    .get(index)
                    .ok_or_else(|| anyhow::anyhow!("more objects written than listed"))?;
                if *t == ObjectType::File {
                    let m = get_varint(ops, &mut pos)?;
                    let x = get_varint(ops, &mut pos)?;
                    ensure!(
                        (m as usize) < part.modes.len() && (x as usize) < part.xattrs.len(),
                        "mode/xattr index out of range"
                    );
                    let size = get_varint(ops, &mut pos)?;
                    let off = get_varint(ops, &mut pos)?;
                    in_payload(off, size)?;
                } else {
                    let len = get_varint(ops, &mut pos)?;
                    let off = get_varint(ops, &mut pos)?;
                    in_payload(off, len)?;
                }
                index += 1;
                n[0] += 1;
            }
            OPEN => {
                ensure!(index < objects.len(), "more objects opened than listed");
                for _ in 0..3 {
                    get_varint(ops, &mut pos)?;
                }
                n[1] += 1;
            }
            WRITE => {
                let size = get_varint(ops, &mut pos)?;
                let off = get_varint(ops, &mut pos)?;
                if !reading_source {
                    in_payload(off, size)?;
                }
                n[2] += 1;
            }
            SET_READ_SOURCE => {
                let off = get_varint(ops, &mut pos)?;
                in_payload(off, 32)?;
                reading_source = true;
                n[3] += 1;
            }
            UNSET_READ_SOURCE => {
                reading_source = false;
                n[4] += 1;
            }
            CLOSE => {
                index += 1;
                reading_source = false;
                n[5] += 1;
            }
            BSPATCH => {
                let off = get_varint(ops, &mut pos)?;
                let len = get_varint(ops, &mut pos)?;
                in_payload(off, len)?;
                n[6] += 1;
            }
            other => bail!("Unknown opcode {other} at offset {}", pos - 1),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos).unwrap(), v);
            assert_eq!(pos, b.len());
        }
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }
}
