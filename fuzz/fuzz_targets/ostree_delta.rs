//! Static-delta superblock and part reading (`static-delta show`, `prune`), part payloads
//! (lzma-compressed or not) and their bytecode.
#![no_main]

use atomic_factory::ostree::delta::{bytecode, decode_part, parse_superblock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = parse_superblock(data) {
        let _ = sb;
    }
    if let Ok(part) = decode_part(data) {
        let _ = bytecode::count_ops(&part, &[]);
    }
});
