//! Virtual machines: the QEMU command, the accelerator probe, QMP, the HTTP server for the
//! guest, the log monitor, installer media, `install` and `boot-test`.

pub mod cli;
