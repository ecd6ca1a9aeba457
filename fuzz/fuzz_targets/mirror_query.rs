//! MirrorManager query strings and the metalink / failure documents built from them.
#![no_main]

use atomic_factory::mirror::{metalink, server::parse_query};
use atomic_factory_fuzz::mirror_catalog;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::SystemTime;

fuzz_target!(|data: &[u8]| {
    static CAT: OnceLock<atomic_factory::mirror::catalog::Catalog> = OnceLock::new();
    let cat = CAT.get_or_init(mirror_catalog);
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match parse_query(raw) {
        Ok(q) => {
            let doc = metalink::render(
                cat,
                cat.repo(0),
                &[0, 1],
                q.protocol.as_deref(),
                SystemTime::UNIX_EPOCH,
            );
            assert!(doc.ends_with("</metalink>\n"), "{doc}");
        }
        Err((_, msg)) => {
            // The message goes into an XML comment: it must not be able to close it.
            let doc = metalink::failure(&msg, SystemTime::UNIX_EPOCH);
            let body = &doc[doc.find("<!--").expect("a comment") + 4..];
            assert_eq!(body.find("-->"), body.rfind("-->"), "{doc}");
        }
    }
});
