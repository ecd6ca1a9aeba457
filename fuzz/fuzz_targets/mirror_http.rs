//! `mirror serve`'s HTTP handling, driven in-process: any method, target and headers.
#![no_main]

use atomic_factory::mirror::server::{Shared, router};
use atomic_factory_fuzz::{call, mirror_catalog, request};
use axum::extract::ConnectInfo;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

fuzz_target!(|data: &[u8]| {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| Shared::new(mirror_catalog())).clone();
    let Some(mut req) = request(data) else {
        return;
    };
    let peer: SocketAddr = "10.1.2.3:4567".parse().expect("an address");
    req.extensions_mut().insert(ConnectInfo(peer));
    let (status, _) = call(router(shared), req);
    assert!((200..600).contains(&status));
});
