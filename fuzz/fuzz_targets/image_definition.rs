//! image.yaml parsing and validation (serde-saphyr), including the error rendering.
#![no_main]

use atomic_factory::pipeline::definition::ImageDefinition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = ImageDefinition::parse(text, std::path::Path::new("image.yaml")) {
        let _ = format!("{e:#}");
    }
});
