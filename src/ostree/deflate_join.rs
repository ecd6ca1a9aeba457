//! Joining independently compressed raw deflate streams into one stream, as pigz does.
//!
//! libdeflate compresses a whole buffer into a complete stream whose last block carries the
//! BFINAL bit. To continue the stream with more data, that bit is cleared and an empty stored
//! block (the bytes of a zlib sync flush) ends the segment on a byte boundary. Finding the
//! last block means walking the stream block by block, decoding its Huffman codes (RFC 1951
//! §3.2); nothing in libdeflate or flate2 reports where blocks start. Hand-written for that
//! reason: it only walks, it never produces output.

use anyhow::{Result, bail, ensure};

/// The four bytes after an empty stored block's header: LEN 0 and its complement.
const EMPTY_STORED_LEN: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Turns a complete raw deflate stream into a non-final segment that another stream's blocks
/// can follow: the final block's BFINAL bit is cleared and an empty stored block appended.
pub fn make_non_final(stream: &mut Vec<u8>) -> Result<()> {
    let ends = walk(stream)?;
    let header = ends.final_header_bit;
    stream[header / 8] &= !(1u8 << (header % 8));
    // The stored block's three header bits (BFINAL 0, BTYPE 00) are zero: clear whatever
    // follows the stream's last bit and make room for them.
    let with_header = (ends.end_bit + 3).div_ceil(8);
    stream.truncate(ends.end_bit.div_ceil(8));
    if ends.end_bit % 8 != 0 {
        let last = ends.end_bit / 8;
        stream[last] &= (1u8 << (ends.end_bit % 8)) - 1;
    }
    stream.resize(with_header, 0);
    stream.extend_from_slice(&EMPTY_STORED_LEN);
    Ok(())
}

/// Where the last block of a stream starts and where the stream ends, in bits.
#[derive(Debug, PartialEq, Eq)]
struct StreamEnds {
    final_header_bit: usize,
    end_bit: usize,
}

fn walk(stream: &[u8]) -> Result<StreamEnds> {
    let mut bits = Bits {
        data: stream,
        pos: 0,
    };
    loop {
        let header = bits.pos;
        let last = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => bits.skip_stored()?,
            1 => bits.skip_codes(&Huffman::fixed_litlen(), &Huffman::fixed_dist())?,
            2 => {
                let (litlen, dist) = bits.dynamic_tables()?;
                bits.skip_codes(&litlen, &dist)?;
            }
            _ => bail!("invalid deflate block type at bit {header}"),
        }
        if last {
            return Ok(StreamEnds {
                final_header_bit: header,
                end_bit: bits.pos,
            });
        }
    }
}

/// A little-endian bit reader (deflate packs bits from the least significant end).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> Result<u32> {
        let v = self.peek(n);
        self.advance(n)?;
        Ok(v)
    }

    /// The next `n` (<= 24) bits, zeros past the end (callers check with `advance`).
    fn peek(&self, n: u32) -> u32 {
        let byte = self.pos / 8;
        let mut word = 0u32;
        for i in 0..4 {
            if let Some(&b) = self.data.get(byte + i) {
                word |= u32::from(b) << (8 * i);
            }
        }
        (word >> (self.pos % 8)) & ((1u32 << n) - 1)
    }

    fn advance(&mut self, n: u32) -> Result<()> {
        self.pos += n as usize;
        ensure!(
            self.pos <= self.data.len() * 8,
            "deflate stream ends inside a block"
        );
        Ok(())
    }

    fn skip_stored(&mut self) -> Result<()> {
        self.pos = self.pos.next_multiple_of(8);
        let len = self.take(16)?;
        let nlen = self.take(16)?;
        ensure!(len == !nlen & 0xffff, "stored block length check fails");
        self.advance(len * 8)
    }

    fn dynamic_tables(&mut self) -> Result<(Huffman, Huffman)> {
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let hlit = self.take(5)? as usize + 257;
        let hdist = self.take(5)? as usize + 1;
        let hclen = self.take(4)? as usize + 4;
        let mut cl_lengths = [0u8; 19];
        for &i in &ORDER[..hclen] {
            cl_lengths[i] = self.take(3)? as u8;
        }
        let cl = Huffman::new(&cl_lengths)?;
        let mut lengths = Vec::with_capacity(hlit + hdist);
        while lengths.len() < hlit + hdist {
            let (repeat, value) = match self.decode(&cl)? {
                sym @ 0..=15 => (1, sym as u8),
                16 => {
                    let Some(&prev) = lengths.last() else {
                        bail!("length repeat with no previous length");
                    };
                    (3 + self.take(2)? as usize, prev)
                }
                17 => (3 + self.take(3)? as usize, 0),
                18 => (11 + self.take(7)? as usize, 0),
                sym => bail!("invalid code length symbol {sym}"),
            };
            ensure!(
                lengths.len() + repeat <= hlit + hdist,
                "code lengths overrun"
            );
            lengths.extend(std::iter::repeat_n(value, repeat));
        }
        Ok((
            Huffman::new(&lengths[..hlit])?,
            Huffman::new(&lengths[hlit..])?,
        ))
    }

    /// Skips literal/length and distance codes up to the end-of-block symbol.
    fn skip_codes(&mut self, litlen: &Huffman, dist: &Huffman) -> Result<()> {
        loop {
            match self.decode(litlen)? {
                0..=255 => {}
                256 => return Ok(()),
                sym @ 257..=285 => {
                    self.advance(length_extra_bits(sym))?;
                    let d = self.decode(dist)?;
                    ensure!(d < 30, "invalid distance symbol {d}");
                    self.advance(if d < 4 { 0 } else { d / 2 - 1 })?;
                }
                sym => bail!("invalid literal/length symbol {sym}"),
            }
        }
    }

    fn decode(&mut self, h: &Huffman) -> Result<u32> {
        let entry = h.table[self.peek(h.bits) as usize];
        ensure!(entry.len > 0, "invalid Huffman code in deflate stream");
        self.advance(u32::from(entry.len))?;
        Ok(u32::from(entry.symbol))
    }
}

fn length_extra_bits(sym: u32) -> u32 {
    match sym {
        257..=264 | 285 => 0,
        _ => (sym - 261) / 4,
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    symbol: u16,
    /// Code length; 0 marks a bit pattern no code starts with.
    len: u8,
}

/// A canonical Huffman code as a lookup table indexed by the next `bits` bits of input.
struct Huffman {
    bits: u32,
    table: Vec<Entry>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman> {
        let bits = u32::from(lengths.iter().copied().max().unwrap_or(0)).max(1);
        ensure!(bits <= 15, "Huffman code longer than 15 bits");
        let mut count = [0u32; 16];
        for &l in lengths {
            count[l as usize] += 1;
        }
        count[0] = 0;
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for len in 1..16 {
            code = (code + count[len - 1]) << 1;
            next[len] = code;
        }
        let mut table = vec![Entry::default(); 1 << bits];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let len32 = u32::from(len);
            let code = next[len as usize];
            next[len as usize] += 1;
            ensure!(code < (1 << len32), "over-subscribed Huffman code");
            // Codes are stored most significant bit first; the reader sees them reversed.
            let reversed = code.reverse_bits() >> (32 - len32);
            let mut i = reversed as usize;
            while i < table.len() {
                table[i] = Entry {
                    symbol: symbol as u16,
                    len,
                };
                i += 1 << len32;
            }
        }
        Ok(Huffman { bits, table })
    }

    fn fixed_litlen() -> Huffman {
        let mut lengths = [8u8; 288];
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        Huffman::new(&lengths).expect("the fixed code is valid")
    }

    fn fixed_dist() -> Huffman {
        Huffman::new(&[5u8; 30]).expect("the fixed code is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::{test_inflate_raw as inflate, test_noise as noise, test_text as text};
    use std::io::Write;

    fn libdeflate(data: &[u8], level: i32) -> Vec<u8> {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        let n = c.deflate_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn zlib(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn joined_segments_inflate_to_the_concatenated_input() {
        // Every block type (stored noise, fixed for tiny input, dynamic for text), several
        // compressors, and segments ending at every bit offset the samples give.
        let parts: Vec<Vec<u8>> = vec![
            text(300_000),
            noise(70_000, 1),
            b"x".to_vec(),
            Vec::new(),
            text(1000),
            noise(5, 2),
        ];
        for level in [1, 6, 12] {
            let mut joined = Vec::new();
            let mut expect: Vec<u8> = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                let mut z = libdeflate(part, level);
                if i + 1 < parts.len() {
                    make_non_final(&mut z).unwrap();
                }
                joined.extend(z);
                expect.extend(part);
            }
            assert_eq!(inflate(&joined), expect, "libdeflate level {level}");
        }
        // zlib's output walks the same way (its final block ends on any bit).
        for len in [0, 1, 2, 3, 17, 1000, 100_000] {
            let data = text(len);
            let mut z = zlib(&data, 6);
            make_non_final(&mut z).unwrap();
            z.extend(zlib(b"tail", 6));
            let mut expect = data.clone();
            expect.extend(b"tail");
            assert_eq!(inflate(&z), expect, "zlib, {len} bytes");
        }
    }

    #[test]
    fn the_walk_finds_the_real_end() {
        // A zlib stream ended with a sync flush before its final block: the walk must pass
        // the empty stored block and stop at the end of the final one.
        let mut e = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut z = Vec::with_capacity(1 << 16);
        e.compress_vec(&text(5000), &mut z, flate2::FlushCompress::Sync)
            .unwrap();
        let synced = z.len();
        e.compress_vec(b"end", &mut z, flate2::FlushCompress::Finish)
            .unwrap();
        let ends = walk(&z).unwrap();
        assert!(ends.final_header_bit >= synced * 8);
        assert_eq!(ends.end_bit.div_ceil(8), z.len());
    }

    #[test]
    fn broken_streams_are_errors_not_panics() {
        let good = libdeflate(&text(50_000), 6);
        for cut in [0, 1, 10, good.len() / 2, good.len() - 1] {
            let mut z = good[..cut].to_vec();
            assert!(make_non_final(&mut z).is_err(), "cut at {cut}");
        }
        assert!(make_non_final(&mut vec![0x07]).is_err(), "block type 3");
        // A stored block whose length check fails.
        assert!(make_non_final(&mut vec![0x01, 0x05, 0x00, 0x00, 0x00]).is_err());
    }
}
