//! dnf `.repo` (INI) files with `$basearch`/`$releasever` substitution.
#![no_main]

use atomic_factory::compose::sources::parse_repo_file;
use atomic_factory_fuzz::file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = file("fuzz.repo", data);
    if let Err(e) = parse_repo_file(&path, "x86_64", Some("41")) {
        let _ = format!("{e:#}");
    }
});
