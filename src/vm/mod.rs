//! Virtual machines: the QEMU command, the accelerator probe, QMP, the HTTP server for the
//! guest, the log monitor, installer media, `install` and `boot-test`.

pub mod boot_test;
pub mod cli;

/// The accelerator for boot-test. Replaced by the install stage's probe when it lands.
fn accel_for_boot_test(requested: &str) -> anyhow::Result<String> {
    Ok(match requested {
        "kvm" => "kvm".into(),
        _ => "tcg".into(),
    })
}
