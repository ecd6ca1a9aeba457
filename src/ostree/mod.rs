//! The ostree repository core, written in pure Rust and byte-compatible with libostree 2022.7:
//! repository layout, objects (commit, dirtree, dirmeta, content), refs and the summary.
//!
//! - [`gvariant`]: zgvariant glue, ordered `a{sv}`, [`MetaValue`]
//! - [`checksum`]: the [`Checksum`] type
//! - [`objects`]: object byte layouts and parsers
//! - [`repo`]: [`Repo`]: layout, config, lock, durable object and ref writes, reading back
//! - [`refs`]: ref-name rules and ref files
//! - [`deflate`]: the `.filez` deflate stream (stored blocks for data that does not shrink)
//! - [`mtree`]: [`MutableTree`] and `Repo::write_mtree`
//! - [`commit`]: [`commit_directory`], the `ostree commit --tree=dir=` walk
//! - [`summary`]: the `summary` file
//! - [`delta`]: static deltas (generate, read, show); [`traverse`]: reachability
//! - [`inspect`]: `ls`, `show`, `checkout`
//! - [`gpg`], [`detached`], [`sign`]: OpenPGP signatures of commits and summaries

pub mod checksum;
pub mod cli;
pub mod commit;
pub mod datetime;
pub mod deflate;
pub mod deflate_join;
pub mod delta;
pub mod detached;
pub mod gpg;
pub mod gvariant;
pub mod gvariant_raw;
pub mod inspect;
pub mod mtree;
pub mod objects;
pub mod prune;
pub mod refs;
pub mod repo;
pub mod sign;
pub mod summary;
pub mod traverse;

pub use checksum::Checksum;
pub use commit::{CommitOptions, commit_directory};
pub use gvariant::{MetaValue, Metadata};
pub use mtree::{MutableTree, TreeEntry};
pub use objects::{Commit, CommitSpec, DirMeta, DirTree, FileMeta, ObjectType};
pub use repo::{Repo, RepoLock, RepoMode};
pub use summary::{Summary, SummaryRef};
