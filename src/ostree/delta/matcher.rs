//! Exact matches between an old and a new version of a file, for delta parts that copy the
//! unchanged stretches from the client's old object (`write` with a read source) and carry
//! only the changed bytes in the payload. This is what ostree's rollsum pass is for; ostree
//! matches whole bupsplit chunks (about 8 KiB around every change is sent again), we extend
//! each match byte by byte, so the literal bytes are only the changed ones.
//!
//! Hand-written rather than taken from a crate: the rsync-style crates (fast_rsync,
//! librsync bindings) emit their own delta formats at block granularity, and we need byte
//! ranges to turn into ostree opcodes. The algorithm is the classic one: index content-defined
//! anchors of the old file by a rolling hash of the 32 bytes before them, probe the new file
//! at its own anchors, verify, and extend both ways.

/// A stretch of the new file, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// `len` bytes equal to the old file's bytes at `from`.
    Copy {
        /// Offset in the old file.
        from: u64,
        /// Number of bytes.
        len: u64,
    },
    /// `len` bytes of the new file at `start`, sent in the payload.
    Literal {
        /// Offset in the new file.
        start: u64,
        /// Number of bytes.
        len: u64,
    },
}

/// The spans that rebuild the new file, and how many of its bytes come from the old one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matches {
    /// The new file, front to back, as copies and literals.
    pub spans: Vec<Span>,
    /// Bytes of the new file covered by `Copy` spans.
    pub copied: u64,
}

/// The hashed window in front of an anchor; also the shortest match worth a `write` op.
const WINDOW: usize = 32;
/// Odd multiplier of the polynomial rolling hash (mod 2^64).
const PRIME: u64 = 0x100_0000_01b3;

/// Rolling polynomial hash over the last `WINDOW` bytes.
struct Roller {
    hash: u64,
    /// PRIME^WINDOW: the weight of the byte leaving the window.
    out_weight: u64,
}

impl Roller {
    fn new() -> Roller {
        Roller {
            hash: 0,
            out_weight: (0..WINDOW).fold(1u64, |w, _| w.wrapping_mul(PRIME)),
        }
    }

    /// Takes in `byte_in`; `byte_out` is the byte `WINDOW` positions back (0 before that).
    #[inline]
    fn roll(&mut self, byte_in: u8, byte_out: u8) {
        self.hash = self
            .hash
            .wrapping_mul(PRIME)
            .wrapping_add(u64::from(byte_in))
            .wrapping_sub(u64::from(byte_out).wrapping_mul(self.out_weight));
    }

    /// The hash with its bits mixed, so that low and high bits are both usable.
    #[inline]
    fn mixed(&self) -> u64 {
        (self.hash ^ (self.hash >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Anchors are positions whose mixed hash has its low `anchor_bits` bits zero: one every
/// 16 bytes on average for files up to 16 MiB, sparser above so the index stays near a
/// million entries whatever the size.
fn anchor_bits(old_len: usize) -> u32 {
    (old_len >> 20)
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .max(4)
}

/// Direct-mapped table from anchor hashes to positions in the old file (`pos + 1`, 0 = empty).
/// A collision keeps the first entry; every hit is verified against the bytes anyway.
struct Index {
    slots: Vec<(u32, u32)>,
    shift: u32,
}

impl Index {
    fn build(old: &[u8], mask: u64) -> Index {
        let expected = (old.len() >> mask.count_ones()).max(1);
        let bits = (expected * 2).next_power_of_two().trailing_zeros().max(4);
        let mut index = Index {
            slots: vec![(0, 0); 1 << bits],
            shift: 64 - bits,
        };
        let mut r = Roller::new();
        for (i, &b) in old.iter().enumerate() {
            r.roll(b, if i >= WINDOW { old[i - WINDOW] } else { 0 });
            let h = r.mixed();
            if i + 1 >= WINDOW && h & mask == 0 {
                let slot = &mut index.slots[(h >> index.shift) as usize];
                if slot.1 == 0 {
                    // Positions fit u32: callers only index files under 4 GiB.
                    *slot = ((h >> 32) as u32, (i + 1) as u32);
                }
            }
        }
        index
    }

    /// The old position just past a window whose hash is `h`, if one was indexed.
    #[inline]
    fn get(&self, h: u64) -> Option<usize> {
        let (tag, end) = self.slots[(h >> self.shift) as usize];
        (end != 0 && tag == (h >> 32) as u32).then_some(end as usize)
    }
}

/// Finds the spans that rebuild `new` from `old`: a common prefix and suffix first (the
/// usual case of a small edit), then anchor matches in between.
pub fn find_matches(old: &[u8], new: &[u8]) -> Matches {
    let mut out = Matches::default();
    if old.len() >= u32::MAX as usize {
        out.push_literal(0, new.len());
        return out;
    }
    let prefix = common_prefix(old, new);
    let suffix = common_suffix(&old[prefix..], &new[prefix..]);
    out.push_copy(0, prefix);
    let middle_end = new.len() - suffix;
    if prefix < middle_end {
        match_middle(old, new, prefix, middle_end, &mut out);
    }
    out.push_copy(old.len() - suffix, suffix);
    out
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    // Compare 8 bytes at a time, then finish byte by byte.
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Matches `new[start..end]` against all of `old`.
fn match_middle(old: &[u8], new: &[u8], start: usize, end: usize, out: &mut Matches) {
    if old.len() < WINDOW || end - start < WINDOW {
        out.push_literal(start, end - start);
        return;
    }
    let mask = (1u64 << anchor_bits(old.len())) - 1;
    let index = Index::build(old, mask);
    let mut literal_from = start;
    let mut i = start;
    let mut r = Roller::new();
    // Bytes hashed since the last jump: the window is valid once it holds WINDOW of them.
    let mut filled = 0usize;
    while i < end {
        r.roll(new[i], if filled >= WINDOW { new[i - WINDOW] } else { 0 });
        filled += 1;
        i += 1;
        if filled < WINDOW {
            continue;
        }
        let h = r.mixed();
        if h & mask != 0 {
            continue;
        }
        let Some(old_end) = index.get(h) else {
            continue;
        };
        let (mut o, mut n) = (old_end - WINDOW, i - WINDOW);
        if old[o..old_end] != new[n..i] {
            continue;
        }
        // Extend backwards into the pending literal bytes, then forwards.
        while n > literal_from && o > 0 && old[o - 1] == new[n - 1] {
            o -= 1;
            n -= 1;
        }
        let forward = common_prefix(&old[old_end..], &new[i..end]);
        let len = i + forward - n;
        out.push_literal(literal_from, n - literal_from);
        out.push_copy(o, len);
        i = n + len;
        literal_from = i;
        r = Roller::new();
        filled = 0;
    }
    out.push_literal(literal_from, end - literal_from);
}

impl Matches {
    fn push_copy(&mut self, from: usize, len: usize) {
        if len == 0 {
            return;
        }
        self.copied += len as u64;
        // Adjacent copies that continue each other merge into one op.
        if let Some(Span::Copy { from: f, len: l }) = self.spans.last_mut()
            && *f + *l == from as u64
        {
            *l += len as u64;
            return;
        }
        self.spans.push(Span::Copy {
            from: from as u64,
            len: len as u64,
        });
    }

    fn push_literal(&mut self, start: usize, len: usize) {
        if len == 0 {
            return;
        }
        if let Some(Span::Literal { start: s, len: l }) = self.spans.last_mut()
            && *s + *l == start as u64
        {
            *l += len as u64;
            return;
        }
        self.spans.push(Span::Literal {
            start: start as u64,
            len: len as u64,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::test_noise as noise;

    /// Rebuilds the new file from the spans, as the client's `write` ops do.
    fn apply(old: &[u8], new: &[u8], m: &Matches) -> Vec<u8> {
        let mut out = Vec::new();
        for s in &m.spans {
            match *s {
                Span::Copy { from, len } => {
                    out.extend_from_slice(&old[from as usize..(from + len) as usize])
                }
                Span::Literal { start, len } => {
                    out.extend_from_slice(&new[start as usize..(start + len) as usize])
                }
            }
        }
        out
    }

    fn literal_bytes(m: &Matches) -> u64 {
        m.spans
            .iter()
            .map(|s| match s {
                Span::Literal { len, .. } => *len,
                Span::Copy { .. } => 0,
            })
            .sum()
    }

    #[test]
    fn a_small_edit_sends_only_the_changed_bytes() {
        let old = noise(100_000, 1);
        let mut new = old.clone();
        new[50_000..50_064].fill(0x5a);
        new.extend_from_slice(b"changed in B\n");
        let m = find_matches(&old, &new);
        assert_eq!(apply(&old, &new, &m), new);
        assert!(literal_bytes(&m) <= 64 + 13, "{:?}", m.spans);
        assert_eq!(m.copied + literal_bytes(&m), new.len() as u64);
    }

    #[test]
    fn moved_and_inserted_blocks_are_found() {
        let a = noise(40_000, 2);
        let b = noise(40_000, 3);
        let old = [a.clone(), b.clone()].concat();
        // B before A, with new bytes between them.
        let new = [b.clone(), noise(1000, 4), a.clone()].concat();
        let m = find_matches(&old, &new);
        assert_eq!(apply(&old, &new, &m), new);
        // Each block may lose up to an anchor gap at its edges.
        assert!(literal_bytes(&m) < 1000 + 2 * 512, "{}", literal_bytes(&m));
    }

    #[test]
    fn unrelated_and_tiny_inputs_round_trip() {
        for (old, new) in [
            (noise(5000, 5), noise(7000, 6)),
            (Vec::new(), noise(100, 7)),
            (noise(100, 8), Vec::new()),
            (b"abc".to_vec(), b"abd".to_vec()),
            (noise(31, 9), noise(31, 9)),
            (vec![0; 70_000], vec![0; 90_000]),
        ] {
            let m = find_matches(&old, &new);
            assert_eq!(apply(&old, &new, &m), new);
        }
        let m = find_matches(&noise(5000, 5), &noise(7000, 6));
        assert!(m.copied < 100, "unrelated data matched {} bytes", m.copied);
    }

    #[test]
    fn repetitive_data_matches_whole() {
        let text = b"a line of configuration text for the benchmark tree\n".repeat(2000);
        let mut new = text.clone();
        new.truncate(60_000);
        new.extend_from_slice(b"tail");
        let m = find_matches(&text, &new);
        assert_eq!(apply(&text, &new, &m), new);
        assert!(literal_bytes(&m) <= 4 + WINDOW as u64);
    }
}
