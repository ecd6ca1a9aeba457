//! The raw deflate stream of a `.filez`. ostree deflates every content object with zlib at
//! the repo's level (6); on data that does not shrink (compressed firmware, images, payloads)
//! zlib spends the full level-6 effort and then emits stored blocks anyway. Here each 64 KiB
//! unit is judged first and incompressible units go straight to stored blocks (zlib level 0).
//!
//! Units that shrink are compressed by libdeflate at the repo's level, in segments of up to
//! [`SEGMENT`] bytes: libdeflate finds zlib's 3-byte matches, so sizes stay within a few
//! tenths of a percent of ostree's, at well under zlib's CPU (zlib-rs's level 6 skips them
//! and came out 2.4% larger on a copy of /usr). libdeflate only compresses whole buffers, so
//! every segment but the last is made non-final and byte-aligned ([`deflate_join`]) and the
//! next starts with an empty window: the concatenation is one valid raw deflate stream (what
//! pigz does), which ostree's zlib reads.
//!
//! [`deflate_join`]: super::deflate_join

use std::cell::RefCell;
use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};
use libdeflater::{CompressionLvl, Compressor};

use super::deflate_join::make_non_final;
use crate::compressibility::{DEFLATE_STORE_WHEN, Probe};

/// Input buffer size callers should use.
pub const CHUNK: usize = 256 * 1024;
/// Data is judged in units of this size, so a file that is compressible in parts (an RPM's
/// header, an initramfs) is still deflated where it shrinks; a unit that straddles a border
/// costs at most 64 KiB of lost compression or of level-6 effort.
const UNIT: usize = 64 * 1024;
/// Compressible data is handed to libdeflate in buffers of up to this size. Each segment
/// starts with an empty window: 4 MiB segments cost 0.2% of size on large binaries, 1 MiB
/// ones 0.4%. Memory: one segment and its output per committing thread.
pub const SEGMENT: usize = 4 << 20;
/// A final block that holds nothing (fixed Huffman, end of block): ends a stream whose last
/// segment was already written as non-final.
const EMPTY_FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

thread_local! {
    /// libdeflate's compressor allocates its match finder's tables (about 1 MiB at level 6);
    /// one per thread and level serves every object that thread writes.
    static COMPRESSOR: RefCell<Option<(i32, Compressor)>> = const { RefCell::new(None) };
    /// A segment's input and output buffers (up to 4 MiB each), handed from one object to the
    /// next on the same thread: allocating them per object left freed multi-MiB blocks in
    /// the allocator's arenas, and peak RSS of a commit varied from 55 to 223 MiB.
    static SPARE_BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Streams one object's bytes into raw deflate, writing the output to a sink.
pub struct ObjectDeflater {
    /// libdeflate's level for units that shrink; 0 stores everything.
    level: i32,
    /// Level 0: stored blocks.
    store: Compress,
    /// Which kind the current segment is.
    stored: bool,
    /// Compressible bytes not yet compressed.
    pending: Vec<u8>,
    /// Whether a non-final deflated segment has been written (so the stream is open).
    open: bool,
    probe: Probe,
    out: Vec<u8>,
}

impl ObjectDeflater {
    /// `level` is the repository's `zlib-level` (used for every unit that shrinks).
    pub fn new(level: u32) -> ObjectDeflater {
        let (mut pending, mut out) = SPARE_BUFFERS.with_borrow_mut(std::mem::take);
        pending.clear();
        out.clear();
        ObjectDeflater {
            level: level.min(9) as i32,
            store: Compress::new(Compression::none(), false),
            stored: level == 0,
            pending,
            open: false,
            probe: Probe::new(),
            out,
        }
    }

    /// Compresses `data`, writing whatever output is ready to `sink`.
    pub fn write(&mut self, data: &[u8], sink: &mut dyn Write) -> io::Result<()> {
        for unit in data.chunks(UNIT) {
            let stored = self.level == 0 || self.probe.incompressible(unit, DEFLATE_STORE_WHEN);
            if stored != self.stored {
                self.end_segment(sink)?;
                self.stored = stored;
            }
            if stored {
                self.run_store(unit, FlushCompress::None, sink)?;
            } else {
                self.pending.extend_from_slice(unit);
                if self.pending.len() >= SEGMENT {
                    self.deflate_pending(false, sink)?;
                }
            }
        }
        Ok(())
    }

    /// Ends the stream (final block) and writes the rest of the output.
    pub fn finish(&mut self, sink: &mut dyn Write) -> io::Result<()> {
        if self.stored {
            return self.run_store(&[], FlushCompress::Finish, sink);
        }
        if self.pending.is_empty() && self.open {
            return sink.write_all(&EMPTY_FINAL_BLOCK);
        }
        self.deflate_pending(true, sink)
    }

    /// Ends the current segment byte-aligned and not final; the next one starts afresh.
    fn end_segment(&mut self, sink: &mut dyn Write) -> io::Result<()> {
        if !self.stored {
            if !self.pending.is_empty() {
                self.deflate_pending(false, sink)?;
            }
        } else if self.store.total_in() > 0 {
            self.run_store(&[], FlushCompress::Sync, sink)?;
            self.store.reset();
        }
        Ok(())
    }

    fn deflate_pending(&mut self, last: bool, sink: &mut dyn Write) -> io::Result<()> {
        let level = self.level;
        let (pending, out) = (&self.pending, &mut self.out);
        COMPRESSOR.with_borrow_mut(|cached| -> io::Result<()> {
            if cached.as_ref().is_none_or(|(l, _)| *l != level) {
                let lvl = CompressionLvl::new(level)
                    .map_err(|e| io::Error::other(format!("libdeflate level {level}: {e:?}")))?;
                *cached = Some((level, Compressor::new(lvl)));
            }
            let (_, compressor) = cached.as_mut().expect("set above");
            out.resize(compressor.deflate_compress_bound(pending.len()), 0);
            let n = compressor
                .deflate_compress(pending, out)
                .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")))?;
            out.truncate(n);
            Ok(())
        })?;
        if !last {
            make_non_final(&mut self.out).map_err(io::Error::other)?;
            self.open = true;
        }
        self.pending.clear();
        sink.write_all(&self.out)
    }

    fn run_store(
        &mut self,
        mut input: &[u8],
        flush: FlushCompress,
        sink: &mut dyn Write,
    ) -> io::Result<()> {
        if self.out.capacity() < UNIT + 1024 {
            self.out.reserve(UNIT + 1024 - self.out.len());
        }
        loop {
            self.out.clear();
            let before = self.store.total_in();
            let status = self
                .store
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(self.store.total_in() - before) as usize..];
            sink.write_all(&self.out)?;
            let drained = self.out.len() < self.out.capacity();
            match (flush, status) {
                (_, Status::StreamEnd) => return Ok(()),
                (FlushCompress::Finish, _) => {}
                _ if input.is_empty() && drained => return Ok(()),
                _ => {}
            }
        }
    }
}

impl Drop for ObjectDeflater {
    fn drop(&mut self) {
        let buffers = (
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.out),
        );
        SPARE_BUFFERS.with_borrow_mut(|spare| *spare = buffers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::{test_inflate_raw as inflate, test_noise as noise, test_text as text};

    fn deflate(data: &[u8], write_size: usize) -> Vec<u8> {
        let mut d = ObjectDeflater::new(6);
        let mut out = Vec::new();
        for part in data.chunks(write_size) {
            d.write(part, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    fn zlib_level6_len(data: &[u8]) -> usize {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap().len()
    }

    fn libdeflate_level6_len(data: &[u8]) -> usize {
        let mut c = Compressor::new(CompressionLvl::new(6).unwrap());
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        c.deflate_compress(data, &mut out).unwrap()
    }

    #[test]
    fn mixed_chunks_round_trip_and_match_level6_size() {
        // noise, text, noise, text: two level switches each way, odd write sizes.
        let mut data = noise(700_000, 1);
        data.extend(text(600_000));
        data.extend(noise(300_001, 2));
        data.extend(text(5_000));
        for write_size in [4096, 100_000, CHUNK, data.len()] {
            let z = deflate(&data, write_size);
            assert_eq!(inflate(&z), data, "write size {write_size}");
            let reference = zlib_level6_len(&data);
            assert!(
                (z.len() as f64) <= reference as f64 * 1.001 + 64.0,
                "{} bytes vs level 6's {reference}",
                z.len()
            );
        }
    }

    #[test]
    fn noise_is_stored_and_text_is_deflated() {
        let data = noise(1 << 20, 3);
        let z = deflate(&data, CHUNK);
        assert_eq!(inflate(&z), data);
        // Stored blocks: 5 header bytes per 64 KiB block at most.
        assert!(z.len() <= data.len() + 5 * (data.len() / 65535 + 2));
        let t = text(1 << 20);
        let z = deflate(&t, CHUNK);
        assert_eq!(inflate(&z), t);
        // Level 6 like ostree (not a faster level): one segment is one libdeflate stream.
        assert_eq!(z.len(), libdeflate_level6_len(&t));
    }

    #[test]
    fn segments_join_into_one_stream_at_one_shot_size() {
        // Three segments of text, then noise, then text again: joins after deflated and
        // after stored segments, and a final segment shorter than the others.
        let mut data = text(2 * SEGMENT + 12_345);
        data.extend(noise(3 * UNIT, 5));
        data.extend(text(SEGMENT + 1));
        for write_size in [CHUNK, 1_000_003] {
            let z = deflate(&data, write_size);
            assert_eq!(inflate(&z), data, "write size {write_size}");
            let one_shot = libdeflate_level6_len(&data) as f64;
            assert!(
                z.len() as f64 <= one_shot * 1.005,
                "{} bytes vs {one_shot} in one piece",
                z.len()
            );
        }
        // Ending exactly on a segment border leaves an empty final block.
        let t = text(SEGMENT);
        let z = deflate(&t, CHUNK);
        assert_eq!(inflate(&z), t);
        assert!(z.ends_with(&EMPTY_FINAL_BLOCK));
    }

    #[test]
    fn level_zero_stores_everything() {
        let t = text(300_000);
        let mut d = ObjectDeflater::new(0);
        let mut z = Vec::new();
        d.write(&t, &mut z).unwrap();
        d.finish(&mut z).unwrap();
        assert_eq!(inflate(&z), t);
        assert!(z.len() > t.len());
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for data in [Vec::new(), b"x".to_vec(), noise(100, 4)] {
            assert_eq!(inflate(&deflate(&data, 7)), data);
        }
    }
}
