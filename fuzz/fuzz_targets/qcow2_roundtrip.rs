//! Property: a qcow2 we write reads back identically, cluster by cluster (zlib, zstd and
//! uncompressed clusters, holes and all-zero clusters).
#![no_main]

use atomic_factory::image::compress::{Codec, compress_cluster};
use atomic_factory::image::qcow2_write::{CLUSTER_SIZE, ClusterData, Qcow2Writer};
use atomic_factory::image::{backing, source::is_zero};
use atomic_factory_fuzz::scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let codec = match sel % 3 {
        0 => Some(Codec::Zlib),
        1 => Some(Codec::Zstd),
        _ => None,
    };
    let cs = CLUSTER_SIZE as usize;
    // One short input fills several clusters: bits 2..7 of `sel` make holes, and each other
    // cluster is the input repeated (compressible) or a stream seeded by it (incompressible).
    // Whole-slice copies, not a loop per byte: instrumented, that loop was a third of the time.
    let clusters = 1 + (rest.len() / 512).min(6);
    let tail = (sel as usize * 977) % cs;
    let size = (clusters - 1) * cs + tail.max(1);
    let mut disk = vec![0u8; size];
    if !rest.is_empty() {
        for (c, cluster) in disk.chunks_mut(cs).enumerate() {
            if sel >> (2 + c % 6) & 1 == 1 {
                continue;
            }
            if rest[c % rest.len()] & 1 == 0 {
                repeat_into(cluster, rest);
            } else {
                noise_into(cluster, rest, c as u64);
            }
        }
    }
    let path = scratch().join("roundtrip.qcow2");
    let f = std::fs::File::create(&path).expect("creating the image");
    let mut w = Qcow2Writer::new(f, size as u64, codec).expect("starting the image");
    for (i, chunk) in disk.chunks(cs).enumerate() {
        if is_zero(chunk) {
            continue;
        }
        let mut full = chunk.to_vec();
        full.resize(cs, 0);
        let packed = match codec {
            Some(c) => compress_cluster(c, &full).expect("compressing"),
            None => None,
        };
        let d = match &packed {
            Some(p) => ClusterData::Compressed(p),
            None => ClusterData::Plain(&full),
        };
        w.write_cluster(i as u64, d).expect("writing a cluster");
    }
    w.finish().expect("finishing the image");
    let img = backing::open_input(&path, Some("qcow2")).expect("our image must open");
    assert_eq!(img.virtual_size(), size as u64);
    let mut back = vec![0u8; size];
    img.read_at(0, &mut back).expect("our image must read");
    assert!(
        back == disk,
        "qcow2 read back differs from what was written"
    );
});

/// Fills `out` with `pattern` over and over, doubling the copied span each step.
fn repeat_into(out: &mut [u8], pattern: &[u8]) {
    let first = pattern.len().min(out.len());
    out[..first].copy_from_slice(&pattern[..first]);
    let mut filled = first;
    while filled < out.len() {
        let n = filled.min(out.len() - filled);
        out.copy_within(..n, filled);
        filled += n;
    }
}

/// Fills `out` with xorshift64 output seeded by `seed` and `salt`: bytes deflate cannot shrink.
fn noise_into(out: &mut [u8], seed: &[u8], salt: u64) {
    let mut x = seed
        .iter()
        .take(16)
        .fold(0x9e37_79b9_7f4a_7c15 ^ salt, |a, &b| a.rotate_left(8) ^ u64::from(b))
        | 1;
    let mut words = out.chunks_exact_mut(8);
    for w in &mut words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    let rem = words.into_remainder();
    let n = rem.len();
    rem.copy_from_slice(&x.to_be_bytes()[..n]);
}
