//! Virtual machines: the QEMU command, the accelerator probe, QMP, the HTTP server for the
//! guest, the log monitor, installer media, `install` and `boot-test`.

pub mod accel;
pub mod cli;
pub mod install;
pub mod kickstart_prep;
pub mod media;
pub mod monitor;
pub mod qemu;
pub mod qmp;
pub mod server;
