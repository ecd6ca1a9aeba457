//! The ostree repository core, written in pure Rust and byte-compatible with libostree 2022.7:
//! repository layout, objects (commit, dirtree, dirmeta, content), refs and the summary.
//!
//! - [`gvariant`]: zgvariant glue, ordered `a{sv}`, [`MetaValue`]
//! - [`checksum`]: the [`Checksum`] type
//! - [`objects`]: object byte layouts and parsers
//! - [`repo`]: [`Repo`]: layout, config, lock, durable object and ref writes, reading back
//! - [`refs`]: ref-name rules and ref files
//! - [`mtree`]: [`MutableTree`] and `Repo::write_mtree`
//! - [`commit`]: [`commit_directory`], the `ostree commit --tree=dir=` walk
//! - [`summary`]: the `summary` file
//! - [`inspect`]: `ls`, `show`, `checkout`

pub mod checksum;
pub mod cli;
pub mod commit;
pub mod datetime;
pub mod gvariant;
pub mod inspect;
pub mod mtree;
pub mod objects;
mod progress;
pub mod refs;
pub mod repo;
pub mod summary;

pub use checksum::Checksum;
pub use commit::{CommitOptions, commit_directory};
pub use gvariant::{MetaValue, Metadata};
pub use mtree::{MutableTree, TreeEntry};
pub use objects::{Commit, CommitSpec, DirMeta, DirTree, FileMeta, ObjectType};
pub use repo::{Repo, RepoLock, RepoMode};
pub use summary::{Summary, SummaryRef};
