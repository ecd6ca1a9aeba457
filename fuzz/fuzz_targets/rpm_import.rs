//! RPM package reading as `compose tree` does it: the header (name, EVR, deps, files), the
//! model of the tree (where every payload path goes: `../`, absolute-path and layout checks)
//! and the payload stream.
#![no_main]

use atomic_factory::compose::model::{Header, build};
use atomic_factory::compose::payload::{ListedFile, Payload};
use atomic_factory::compose::sources::info_from_header;
use atomic_factory_fuzz::file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = file("fuzz.rpm", data);
    // As every importer path does: refuse headers larger than the file before parsing.
    if atomic_factory::compose::rpm_bounds::check_header_sizes(&path).is_err() {
        return;
    }
    let Ok(info) = info_from_header(&path, "fuzz") else {
        return;
    };
    let Ok(meta) = rpm::PackageMetadata::parse(&mut std::io::Cursor::new(data)) else {
        return;
    };
    let header = Header { info, meta };
    let _ = build(std::slice::from_ref(&header), true);
    // The payload as the importer streams it; file names are only used through the model.
    let Ok(files) = ListedFile::from_header(&header.meta) else {
        return;
    };
    let mut reader = std::io::Cursor::new(data);
    if rpm::PackageMetadata::parse(&mut reader).is_err() {
        return;
    }
    let Ok(mut payload) = Payload::after_headers(reader, files) else {
        return;
    };
    while let Ok(Some(_)) = payload.next_entry() {
        if payload.finish_entry().is_err() {
            break;
        }
    }
});
