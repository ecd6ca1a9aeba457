//! Kickstart flatten + parse + lint (no ksvalidator: that is pykickstart's code, not ours).
//! Property: every finding names a line inside the file it is about (0 = the whole file).
#![no_main]

use atomic_factory::kickstart::commands::SyntaxVersion;
use atomic_factory::kickstart::lint::lint_flattened;
use atomic_factory::kickstart::parse::flatten;
use atomic_factory_fuzz::file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A real file, so `%include ks.cfg` (a cycle) and includes of other files are exercised.
    let path = file("ks.cfg", data);
    let version = SyntaxVersion::parse("DEVEL").expect("DEVEL is a version");
    let flat = flatten(text, &path);
    let report = lint_flattened(&flat, &path, version);
    let lines = text.lines().count().max(1);
    for f in &report.findings {
        if *f.origin.file == *path {
            assert!(
                f.origin.line <= lines,
                "finding at line {} of a {lines}-line file: {f}",
                f.origin.line
            );
        }
        let _ = f.to_string();
    }
});
