//! Virtual machines: the one QEMU launcher, the accelerator probe, QMP, the HTTP server for
//! the guest, the one console monitor, installer media, `install`, `boot-test` and
//! `upgrade-test` (with its serial `console`).

pub mod accel;
pub mod boot_test;
pub mod cli;
pub mod console;
pub mod install;
pub mod kickstart_prep;
pub mod media;
pub mod monitor;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod server;
pub mod upgrade_test;

/// Resolves `auto|kvm|tcg` to the accelerator QEMU gets, with the same probe as install
/// (so a broken /dev/kvm is noticed, not hung on). Prints the fallback notice once.
pub fn choose_accel_blocking(choice: accel::AccelChoice) -> anyhow::Result<accel::Accel> {
    let scratch = tempfile::tempdir()?;
    let decision = crate::runtime::block_on(accel::choose(
        choice,
        std::path::Path::new("qemu-system-x86_64"),
        scratch.path(),
    ))??;
    if let Some(notice) = &decision.notice {
        eprintln!("note: {notice}");
    }
    Ok(decision.accel)
}
