//! OpenPGP detached signatures, as ostree stores them (`ostree.gpgsigs`) and checks them
//! (`ostree show --gpg-verify`, `gpg-verify=true` remotes), with the `pgp` crate.
//!
//! Secret keys come from an armored key file ([`signer`]) or from a GnuPG home directory
//! ([`homedir`], through `gpg --export-secret-keys`); either way the signing is done here,
//! in Rust.
//!
//! - [`passphrase`]: [`Passphrase`], the first line of a passphrase file
//! - [`secret`]: the primary key or subkey that signs, unlocked in memory
//! - [`signer`]: [`Signer`], the key gpg would pick for a key id, and detached signatures
//! - [`homedir`]: `Signer::from_gpg_homedir`, the key exported by `gpg`
//! - [`keyring`]: [`Keyring`], public keys from keyring files; [`keybox`]: `pubring.kbx`
//! - [`verify`]: `Keyring::verify`, its [`SigCheck`] and [`SigStatus`], and RPM signatures
//! - [`cert`]: signing capability, revocation and expiry, as gpg judges them

pub mod cert;
pub mod homedir;
pub mod keybox;
pub mod keyring;
pub mod passphrase;
pub mod secret;
pub mod signer;
pub mod verify;

pub use keyring::Keyring;
pub use passphrase::Passphrase;
pub use signer::Signer;
pub use verify::{SigCheck, SigStatus};

#[cfg(test)]
mod test_fixtures;
