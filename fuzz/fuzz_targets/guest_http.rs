//! The guest server (kickstart + repository for the installer), driven in-process.
//! Property: nothing outside the served repository is ever returned, whatever the path
//! (percent-encoded `..`, `//`, NUL, a symlink in the repository pointing out).
#![no_main]

use atomic_factory::vm::server::router;
use atomic_factory_fuzz::{call, request, scratch};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

const SECRET: &[u8] = b"SECRET-OUTSIDE-THE-ROOT";

/// scratch/www/repo is served; scratch/www/secret and scratch/secret lie outside it.
fn repo() -> &'static PathBuf {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let www = scratch().join("www");
        let repo = www.join("repo");
        std::fs::create_dir_all(repo.join("objects/ab")).expect("making the repo");
        std::fs::write(
            repo.join("config"),
            b"[core]\nrepo_version=1\nmode=archive-z2\n",
        )
        .expect("writing config");
        std::fs::write(repo.join("objects/ab/cd.filez"), b"object").expect("writing an object");
        std::fs::write(www.join("secret"), SECRET).expect("writing a secret");
        std::fs::write(scratch().join("secret"), SECRET).expect("writing a secret");
        std::os::unix::fs::symlink("../secret", repo.join("link")).expect("symlink");
        std::os::unix::fs::symlink(www.join("secret"), repo.join("objects/abs")).expect("symlink");
        std::os::unix::fs::symlink("..", repo.join("up")).expect("symlink");
        repo
    })
}

fuzz_target!(|data: &[u8]| {
    let repo = repo().clone();
    let Some(req) = request(data) else {
        return;
    };
    let target = req.uri().to_string();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let (status, body) = call(router(b"ks".to_vec(), Some(repo), tx), req);
    assert!(
        !body.windows(SECRET.len()).any(|w| w == SECRET),
        "{target} served a file outside the repository (status {status})"
    );
});
