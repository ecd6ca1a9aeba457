//! rpm-md metadata: repomd.xml, primary.xml and filelists.xml (plain and gzip), as a
//! repository we compose from serves them. Input: repomd bytes, a NUL NUL separator, then
//! the primary/filelists document.
#![no_main]

use atomic_factory::compose::sources::{RepoDef, parse_filelists, parse_primary, parse_repomd};
use atomic_factory_fuzz::{file, scratch, split2};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (repomd, primary) = split2(data, b"\0\0");
    let _ = parse_repomd(&file("repomd.xml", repomd));
    let repo = RepoDef {
        id: "fuzz".into(),
        dir: scratch().to_path_buf(),
        origin: scratch().join("fuzz.repo"),
    };
    let _ = parse_primary(&file("primary.xml", primary), &repo);
    let _ = parse_filelists(&file("filelists.xml", primary));
    // The same bytes as a gzip stream (often a corrupt one): the decompressing reader path.
    let _ = parse_primary(&file("primary.xml.gz", primary), &repo);
});
