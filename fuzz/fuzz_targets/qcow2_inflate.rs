//! Compressed-cluster inflate (zlib with QEMU's 4 KiB window, zstd, and VMDK's zlib stream)
//! into one cluster: the output can never exceed the cluster, whatever the input claims.
#![no_main]

use atomic_factory::image::compress::{Codec, decompress_cluster};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let codec = match sel % 3 {
        0 => Codec::Zlib,
        1 => Codec::Zstd,
        _ => Codec::ZlibStream,
    };
    // Cluster sizes from 512 B to 2 MiB, as qcow2 allows (cluster_bits 9..=21).
    let cluster = 1usize << (9 + (sel / 3) % 13);
    let mut out = vec![0u8; cluster];
    let _ = decompress_cluster(codec, input, &mut out);
    assert_eq!(out.len(), cluster);
});
