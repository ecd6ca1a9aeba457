//! Cluster compression as qcow2 stores it: raw deflate with a 4 KiB window, or zstd frames.
//!
//! QEMU compresses with `deflateInit2(level, Z_DEFLATED, -12, 9, ..)` and inflates with a
//! 4 KiB window, so a stream with back-references further than 4096 bytes is unreadable to
//! it: the window bits here must stay 12 (flate2's zlib-rs backend is the one that can).

use std::cell::RefCell;

use anyhow::{Result, bail};
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use crate::compressibility::{DEFLATE_STORE_WHEN, Probe};

/// The codec used for compressed clusters (and the header's `compression_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Raw deflate with a 4 KiB window, as QEMU writes it (`compression_type` 0).
    Zlib,
    /// One zstd frame per cluster (`compression_type` 1; QEMU 5.1 or later).
    Zstd,
    /// A zlib (RFC 1950) stream with a 32 KiB window, for every non-zero grain, even one that
    /// does not shrink: a streamOptimized VMDK stores only compressed grains.
    #[serde(rename = "zlib-stream")]
    ZlibStream,
}

/// QEMU's window for qcow2 zlib clusters.
const WINDOW_BITS: u8 = 12;
/// QEMU's `Z_DEFAULT_COMPRESSION`, so sizes match qemu-img's.
const ZLIB_LEVEL: u32 = 6;
/// zstd's default level, which is what QEMU uses.
const ZSTD_LEVEL: i32 = 3;

thread_local! {
    // One compressor per rayon worker: creating a deflate state per 64 KiB cluster costs more
    // than compressing a zero-ish cluster.
    static DEFLATE: RefCell<Compress> =
        RefCell::new(Compress::new_with_window_bits(flate2::Compression::new(ZLIB_LEVEL), false, WINDOW_BITS));
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static ZLIB_STREAM: RefCell<Compress> =
        RefCell::new(Compress::new(flate2::Compression::new(ZLIB_LEVEL), true));
    // Level 0: stored blocks, for grains that would not shrink.
    static ZLIB_STORED: RefCell<Compress> =
        RefCell::new(Compress::new(flate2::Compression::none(), true));
    static PROBE: RefCell<Probe> = RefCell::new(Probe::new());
}

/// Whether a cluster would not shrink (random or already compressed data): zlib would spend
/// the full level-6 effort and then emit stored blocks anyway.
fn incompressible(data: &[u8]) -> bool {
    PROBE.with(|p| p.borrow_mut().incompressible(data, DEFLATE_STORE_WHEN))
}

/// Compresses one cluster; `None` when the result would not be smaller than the cluster
/// (QEMU then stores the cluster uncompressed, and so do we).
pub fn compress_cluster(codec: Codec, data: &[u8]) -> Result<Option<Vec<u8>>> {
    // QEMU accepts at most cluster_size - 1 compressed bytes.
    let limit = data.len() - 1;
    match codec {
        // QEMU would store it uncompressed, and so do we, without trying.
        Codec::Zlib if incompressible(data) => Ok(None),
        Codec::Zlib => DEFLATE.with(|c| {
            let mut c = c.borrow_mut();
            c.reset();
            let mut out = Vec::with_capacity(limit);
            match c.compress_vec(data, &mut out, FlushCompress::Finish)? {
                Status::StreamEnd if c.total_in() == data.len() as u64 => Ok(Some(out)),
                // The output buffer filled up before the end: it does not compress.
                _ => Ok(None),
            }
        }),
        Codec::ZlibStream => {
            let stream = if incompressible(data) {
                &ZLIB_STORED
            } else {
                &ZLIB_STREAM
            };
            stream.with(|c| {
                let mut c = c.borrow_mut();
                c.reset();
                // deflate's worst case is a few bytes per 16 KiB stored block over the input.
                let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
                loop {
                    let done = c.total_in() as usize;
                    let status = c.compress_vec(&data[done..], &mut out, FlushCompress::Finish)?;
                    if status == Status::StreamEnd {
                        return Ok(Some(out));
                    }
                    out.reserve(4096);
                }
            })
        }
        Codec::Zstd => ZSTD.with(|z| {
            let mut z = z.borrow_mut();
            if z.is_none() {
                *z = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
            }
            let comp = z.as_mut().expect("just set");
            let mut out = vec![0u8; limit];
            match comp.compress_to_buffer(data, &mut out) {
                Ok(n) => {
                    out.truncate(n);
                    Ok(Some(out))
                }
                // "Destination buffer is too small" is the only expected error here.
                Err(_) => Ok(None),
            }
        }),
    }
}

/// Decompresses one cluster into `out` (exactly one cluster long). `input` may carry trailing
/// bytes of the next compressed cluster, as qcow2 packs them back to back.
pub fn decompress_cluster(codec: Codec, input: &[u8], out: &mut [u8]) -> Result<()> {
    match codec {
        Codec::Zlib | Codec::ZlibStream => {
            let mut d = if codec == Codec::Zlib {
                Decompress::new_with_window_bits(false, WINDOW_BITS)
            } else {
                Decompress::new(true)
            };
            let status = d.decompress(input, out, FlushDecompress::Finish);
            match status {
                Ok(_) if d.total_out() == out.len() as u64 => Ok(()),
                Ok(_) => bail!(
                    "deflate data ended after {} of {} bytes",
                    d.total_out(),
                    out.len()
                ),
                Err(e) => bail!("invalid deflate data: {e}"),
            }
        }
        Codec::Zstd => {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut dec = Decoder::new()?;
            let mut inb = InBuffer::around(input);
            let mut outb = OutBuffer::around(out);
            while outb.pos() < outb.capacity() {
                let (in_before, out_before) = (inb.pos(), outb.pos());
                if let Err(e) = dec.run(&mut inb, &mut outb) {
                    bail!("invalid zstd data: {e}");
                }
                if inb.pos() == in_before && outb.pos() == out_before {
                    bail!(
                        "zstd data ended after {} of {} bytes",
                        outb.pos(),
                        outb.capacity()
                    );
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Text with repeats further apart than 4 KiB, the case a 32 KiB window would break.
        let mut v = Vec::new();
        let mut i = 0u32;
        while v.len() < 65536 {
            v.extend_from_slice(
                format!(
                    "line {} of a log file, value {}\n",
                    i % 700,
                    i * 7919 % 1000
                )
                .as_bytes(),
            );
            i += 1;
        }
        v.truncate(65536);
        v
    }

    #[test]
    fn both_codecs_round_trip_with_trailing_slop() {
        let data = sample();
        for codec in [Codec::Zlib, Codec::Zstd, Codec::ZlibStream] {
            let mut packed = compress_cluster(codec, &data)
                .unwrap()
                .expect("text compresses");
            assert!(packed.len() < data.len() / 2);
            packed.extend_from_slice(&[0xAB; 700]);
            let mut out = vec![0u8; 65536];
            decompress_cluster(codec, &packed, &mut out).unwrap();
            assert!(out == data, "{codec:?} round trip differs");
        }
    }

    #[test]
    fn random_data_is_left_uncompressed() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let data: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for codec in [Codec::Zlib, Codec::Zstd] {
            assert!(compress_cluster(codec, &data).unwrap().is_none());
        }
        // VMDK grains are always compressed, even when that grows them.
        let grown = compress_cluster(Codec::ZlibStream, &data).unwrap().unwrap();
        assert!(grown.len() > data.len());
        let mut out = vec![0u8; 65536];
        decompress_cluster(Codec::ZlibStream, &grown, &mut out).unwrap();
        assert!(out == data);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = vec![0u8; 65536];
        for codec in [Codec::Zlib, Codec::Zstd] {
            assert!(decompress_cluster(codec, &[0xff; 300], &mut out).is_err());
        }
    }
}
