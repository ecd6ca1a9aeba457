//! The process's one tokio runtime. install, upgrade-test, the KVM probe, `mirror serve` and
//! `mirror crawl` all run on it, so a `build` that runs several of them starts one set of
//! worker threads, not one per stage.

use std::future::Future;
use std::sync::OnceLock;

use anyhow::{Context as _, Result};

/// Worker threads: the machines this runs on have two cores, and the async work (QEMU's
/// console, the guest's HTTP server, mirror requests) waits on I/O rather than the CPU.
const WORKER_THREADS: usize = 2;

/// The shared runtime, started on first use.
pub fn get() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("atomic-factory-async")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Two threads racing here both build one; the loser's is dropped unused.
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `future` to completion on the shared runtime, from synchronous code (not from inside
/// the runtime: tokio refuses nested `block_on`).
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(get()?.block_on(future))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_caller_gets_the_same_runtime() {
        let a = super::get().unwrap() as *const _;
        let b = super::get().unwrap() as *const _;
        assert_eq!(a, b);
        assert_eq!(super::block_on(async { 6 * 7 }).unwrap(), 42);
    }
}
