//! Mirrors: find repositories in a master tree, emit metalinks the ostree client accepts, serve them.
//!
//! - `scan`: walk the master tree, name repositories, hash summary/repomd.xml
//! - `state`: the state file scan and crawl write (atomic, locked)
//! - `config`: `mirrors.yaml`
//! - `crawl`: check each mirror's copy by hash
//! - `catalog`: state + mirrors indexed for serving
//! - `selection`: which mirrors a client gets, in which order
//! - `metalink`, [`mirrorlist`]: the two document formats
//! - `server`: the HTTP server

pub mod catalog;
pub mod cli;
pub mod config;
pub mod crawl;
pub mod metalink;
pub mod mirrorlist;
pub mod scan;
pub mod selection;
pub mod server;
pub mod state;
