//! qcow2 header, L1/L2 and refcount reading, every guest byte, then `postprocess` of the result.
#![no_main]

use atomic_factory::image::{PostprocessConfig, backing, postprocess};
use atomic_factory_fuzz::{file, scratch};
use libfuzzer_sys::fuzz_target;

/// Reading and converting cost time in the virtual size, which a 100-byte header can set to
/// exabytes legitimately (an empty image); only small disks are read in full and converted.
const MAX_READ: u64 = 8 << 20;

fuzz_target!(|data: &[u8]| {
    let input = file("in.qcow2", data);
    let Ok(img) = backing::open_input(&input, Some("qcow2")) else {
        return;
    };
    let size = img.virtual_size();
    if size > MAX_READ {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < size {
        let n = buf.len().min((size - at) as usize);
        if img.read_at(at, &mut buf[..n]).is_err() {
            return;
        }
        at += n as u64;
    }
    drop(img);
    let out = scratch().join("out.qcow2");
    let mut cfg = PostprocessConfig::new(&input, &out);
    cfg.input_format = Some("qcow2".into());
    cfg.progress = atomic_factory::progress::Reporter::quiet();
    let _ = postprocess(&cfg);
    for f in ["out.qcow2", "CHECKSUM", "manifest.json", "images.json"] {
        let _ = std::fs::remove_file(scratch().join(f));
    }
});
