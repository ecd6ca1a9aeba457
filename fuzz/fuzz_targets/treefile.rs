//! rpm-ostree treefile loading (YAML or JSON, includes, key checks, merging).
#![no_main]

use atomic_factory::compose::treefile;
use atomic_factory_fuzz::file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Named so `include: treefile.yaml` includes itself, and a second file to include.
    let path = file("treefile.yaml", data);
    file("base.yaml", b"packages: [a]\n");
    if let Err(e) = treefile::load(&path) {
        let _ = format!("{e:#}");
    }
});
