//! productmd, the library Fedora's tools read images.json with, as the judge of ours.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The venv vm/prepare makes, with productmd in it.
pub fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = Command::new(&p)
        .args(["-c", "import productmd.images"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "productmd is not in {}: run vm/prepare", p.display());
    p
}

/// Loads an images.json with productmd (which validates every field) and prints
/// `variant arch type format path size sha256 subvariant` per image.
const LOAD_IMAGES: &str = r#"
import sys
from productmd.images import Images
im = Images()
im.load(sys.argv[1])
for variant in im.images:
    for arch in im.images[variant]:
        for i in sorted(im.images[variant][arch], key=lambda i: i.path):
            print(variant, arch, i.type, i.format, i.path, i.size, i.checksums["sha256"], i.subvariant)
"#;

/// Runs productmd's `Images().load()` on `images_json`; its output lists the images.
pub fn load(images_json: &Path) -> Output {
    Command::new(python())
        .args(["-c", LOAD_IMAGES])
        .arg(images_json)
        .output()
        .expect("running python")
}
