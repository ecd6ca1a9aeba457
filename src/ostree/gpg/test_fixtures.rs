//! The keys and signatures under tests/fixtures/trust, made with gpg, that the unit tests
//! of these modules share.

use super::keyring::Keyring;

pub const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trust");
pub const ED_FPR: &str = "805AC4F7D7F8E0D7BA5ABE7B9CFD696728897C33";
pub const SUB_PRIMARY: &str = "DEAABF496F19E7495ED709258E992E5A19B61AB4";
pub const SUB_SIGNING: &str = "40E5A4946A3FD8A70D7179172BC8273E7D339A8B";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIX}/{name}")).unwrap()
}

/// The public keys of all three fixture certificates (ed, sub, expired).
pub fn keyring() -> Keyring {
    Keyring::from_bytes(&fixture("all.pub.gpg")).unwrap()
}
