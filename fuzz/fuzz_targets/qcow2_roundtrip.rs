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
    // The input, repeated into clusters with a stride, so one short input fills several
    // clusters with a mix of compressible, incompressible and zero data; bit 2..7 of `sel`
    // pick holes.
    let clusters = 1 + (rest.len() / 512).min(6);
    let tail = (sel as usize * 977) % cs;
    let size = (clusters - 1) * cs + tail.max(1);
    let mut disk = vec![0u8; size];
    if !rest.is_empty() {
        for (i, b) in disk.iter_mut().enumerate() {
            let c = i / cs;
            if sel >> (2 + c % 6) & 1 == 1 {
                continue;
            }
            *b = rest[(i * (c + 1)) % rest.len()];
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
