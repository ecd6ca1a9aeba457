//! The raw deflate stream of a `.filez`. ostree deflates every content object at the repo's
//! zlib level (6); on data that does not shrink (compressed firmware, images, payloads) zlib
//! spends the full level-6 effort and then emits stored blocks anyway. Here each chunk is
//! judged first and incompressible chunks go straight to stored blocks (zlib level 0), so the
//! bytes on disk match ostree's size within a few bytes per chunk at a fraction of the CPU.
//! A run of chunks of one kind is one segment from its own zlib stream (level 6 or level 0);
//! every segment but the last ends with a sync flush (byte-aligned, not final) and the next
//! one starts with an empty window, so the concatenation is one valid raw deflate stream (what
//! pigz does). zlib-rs's `deflateParams` (flate2 `set_level`) cannot be used instead: through
//! flate2 it fails with a stream error once data has been fed.

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::compressibility::{DEFLATE_STORE_WHEN, Probe};

/// Input buffer size callers should use.
pub const CHUNK: usize = 256 * 1024;
/// Data is judged in units of this size, so a file that is compressible in parts (an RPM's
/// header, an initramfs) is still deflated where it shrinks; a unit that straddles a border
/// costs at most 64 KiB of lost compression or of level-6 effort.
const UNIT: usize = 64 * 1024;

/// Streams one object's bytes into raw deflate, writing the output to a sink.
pub struct ObjectDeflater {
    /// The repository's level, for chunks that shrink.
    deflate: Compress,
    /// Level 0: stored blocks.
    store: Compress,
    /// Which of the two writes the current segment.
    stored: bool,
    probe: Probe,
    out: Vec<u8>,
}

impl ObjectDeflater {
    /// `level` is the repository's `zlib-level` (used for every chunk that shrinks).
    pub fn new(level: u32) -> ObjectDeflater {
        ObjectDeflater {
            deflate: Compress::new(Compression::new(level), false),
            store: Compress::new(Compression::none(), false),
            stored: false,
            probe: Probe::new(),
            out: Vec::with_capacity(CHUNK + CHUNK / 8 + 64),
        }
    }

    /// Compresses `data`, writing whatever output is ready to `sink`.
    pub fn write(&mut self, data: &[u8], sink: &mut dyn Write) -> io::Result<()> {
        for chunk in data.chunks(UNIT) {
            let stored = self.probe.incompressible(chunk, DEFLATE_STORE_WHEN);
            if stored != self.stored {
                // End the segment byte-aligned and not final; the stream left starts afresh
                // next time (its window would not match the bytes in between).
                if self.active().total_in() > 0 {
                    self.run(&[], FlushCompress::Sync, sink)?;
                    self.active().reset();
                }
                self.stored = stored;
            }
            self.run(chunk, FlushCompress::None, sink)?;
        }
        Ok(())
    }

    /// Ends the stream (final block) and writes the rest of the output.
    pub fn finish(&mut self, sink: &mut dyn Write) -> io::Result<()> {
        self.run(&[], FlushCompress::Finish, sink)
    }

    fn active(&mut self) -> &mut Compress {
        if self.stored {
            &mut self.store
        } else {
            &mut self.deflate
        }
    }

    fn run(
        &mut self,
        mut input: &[u8],
        flush: FlushCompress,
        sink: &mut dyn Write,
    ) -> io::Result<()> {
        loop {
            self.out.clear();
            let z = if self.stored {
                &mut self.store
            } else {
                &mut self.deflate
            };
            let before = z.total_in();
            let status = z
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(z.total_in() - before) as usize..];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::{test_noise as noise, test_text as text};
    use std::io::Read;

    fn deflate(data: &[u8], write_size: usize) -> Vec<u8> {
        let mut d = ObjectDeflater::new(6);
        let mut out = Vec::new();
        for part in data.chunks(write_size) {
            d.write(part, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    fn inflate(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(z)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn zlib_level6_len(data: &[u8]) -> usize {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap().len()
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
        // Level 6 like ostree (not a faster level): the same size as a one-shot level-6 stream.
        let reference = zlib_level6_len(&t) as f64;
        assert!((z.len() as f64 - reference).abs() <= reference * 0.001 + 8.0);
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for data in [Vec::new(), b"x".to_vec(), noise(100, 4)] {
            assert_eq!(inflate(&deflate(&data, 7)), data);
        }
    }
}
