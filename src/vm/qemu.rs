//! The one QEMU launcher: the command line, built from a typed configuration; the
//! throwaway overlay a VM writes instead of an image; starting QEMU and taking its
//! console connections; and the process guard that makes sure QEMU never outlives us.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::{UnixListener, UnixStream};

use super::accel::Accel;
use super::process::{HEADLESS, QemuProcess, spawn};
use crate::command::CommandExt as _;

/// The name Anaconda looks for to send its log to the host (`inst.virtiolog` default).
pub const ANACONDA_LOG_PORT: &str = "org.fedoraproject.anaconda.log.0";

/// What the VM boots: a kernel and initrd given on the command line (the installer), or the
/// bootloader on the disk (an installed image).
#[derive(Debug, Clone)]
pub enum Boot {
    /// Direct kernel boot (`-kernel`, `-initrd`, `-append`): the installer.
    Kernel {
        /// The kernel image.
        kernel: PathBuf,
        /// The initrd.
        initrd: PathBuf,
        /// The kernel command line.
        append: String,
    },
    /// The firmware boots the disk's own bootloader: an installed image.
    Disk,
}

/// How long QEMU gets to connect its console sockets after it starts.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// Everything that goes on the QEMU command line of a VM run: install, boot-test,
/// upgrade-test.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The QEMU binary (normally `qemu-system-x86_64`).
    pub binary: PathBuf,
    /// The accelerator; it also picks the CPU model (`host` under KVM, `Nehalem` under TCG).
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Guest CPUs.
    pub cpus: u32,
    /// The target disk (qcow2), attached as virtio.
    pub disk: PathBuf,
    /// Installer media attached read-only as a CD-ROM (boot.iso).
    pub cdrom: Option<PathBuf>,
    /// What the VM boots.
    pub boot: Boot,
    /// Unix socket we listen on; QEMU connects the serial console to it.
    pub serial_socket: PathBuf,
    /// Unix socket we listen on; QEMU connects the virtio log port (Anaconda's) to it.
    pub virtio_log_socket: Option<PathBuf>,
    /// Unix socket QEMU listens on for QMP, if the caller talks to QEMU.
    pub qmp_socket: Option<PathBuf>,
    /// User-mode networking (the guest reaches host 127.0.0.1 as 10.0.2.2).
    pub network: bool,
}

impl QemuConfig {
    /// The arguments after the binary, in order, unquoted.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = HEADLESS.iter().map(Into::into).collect();
        let mut push = |s: &str| a.push(s.into());
        push("-machine");
        push(&format!("pc,accel={}", self.accel.qemu_name()));
        if self.accel == Accel::Tcg {
            // qemu64 lacks x86-64-v2; kola uses Nehalem under TCG for the same reason.
            push("-cpu");
            push("Nehalem");
        } else {
            push("-cpu");
            push("host");
        }
        push("-m");
        push(&self.memory_mib.to_string());
        push("-smp");
        push(&self.cpus.to_string());
        // A VGA device, so that QMP screendump has something to show on a hang.
        push("-vga");
        push("std");
        push("-chardev");
        push(&format!(
            "socket,id=serial0,path={}",
            self.serial_socket.display()
        ));
        push("-serial");
        push("chardev:serial0");
        if let Some(vlog) = &self.virtio_log_socket {
            push("-device");
            push("virtio-serial-pci,id=virtio-serial0");
            push("-chardev");
            push(&format!("socket,id=anacondalog,path={}", vlog.display()));
            push("-device");
            push(&format!(
                "virtserialport,bus=virtio-serial0.0,chardev=anacondalog,name={ANACONDA_LOG_PORT}"
            ));
        }
        if let Some(qmp) = &self.qmp_socket {
            push("-qmp");
            push(&format!("unix:{},server=on,wait=off", qmp.display()));
        }
        push("-drive");
        push(&format!(
            "file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap,id=target,werror=stop,rerror=stop",
            escape_opt(&self.disk)
        ));
        if let Some(iso) = &self.cdrom {
            push("-drive");
            push(&format!(
                "file={},media=cdrom,readonly=on,format=raw,if=ide,id=media",
                escape_opt(iso)
            ));
        }
        if self.network {
            push("-netdev");
            push("user,id=net0");
            push("-device");
            push("virtio-net-pci,netdev=net0");
        }
        push("-device");
        push("virtio-rng-pci");
        if let Boot::Kernel {
            kernel,
            initrd,
            append,
        } = &self.boot
        {
            a.push("-kernel".into());
            a.push(kernel.clone().into());
            a.push("-initrd".into());
            a.push(initrd.clone().into());
            a.push("-append".into());
            a.push(append.clone().into());
        }
        a
    }

    /// The command line as one shell-quoted line, for the logs.
    pub fn display(&self) -> String {
        let mut s = crate::command::shell_quote(&self.binary.to_string_lossy());
        for a in self.args() {
            s.push(' ');
            s.push_str(&crate::command::shell_quote(&a.to_string_lossy()));
        }
        s
    }

    /// Starts QEMU and takes its console connections: the serial console and, when
    /// configured, Anaconda's log port. A QEMU that exits first, or does not connect within
    /// [`CONNECT_LIMIT`], is an error quoting `qemu_log` (where its stdout and stderr go).
    pub async fn launch(&self, qemu_log: &Path) -> Result<Launched> {
        let bind = |path: &Path| {
            UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))
        };
        let serial_listener = bind(&self.serial_socket)?;
        let virtio_log_listener = self.virtio_log_socket.as_deref().map(bind).transpose()?;
        let mut process = self.spawn(qemu_log)?;
        let spawned = Instant::now();
        let accept = async {
            let (serial, _) = serial_listener.accept().await?;
            let virtio_log = match &virtio_log_listener {
                Some(l) => Some(l.accept().await?.0),
                None => None,
            };
            anyhow::Ok((serial, virtio_log))
        };
        let (serial, virtio_log) = tokio::select! {
            r = tokio::time::timeout(CONNECT_LIMIT, accept) => match r {
                Ok(r) => r?,
                Err(_) => bail!(
                    "QEMU did not connect its serial console within {} s; see {}",
                    CONNECT_LIMIT.as_secs(),
                    qemu_log.display()
                ),
            },
            status = process.wait() => {
                let err = std::fs::read_to_string(qemu_log).unwrap_or_default();
                bail!("QEMU exited at start ({}): {}", status?, err.trim());
            }
        };
        Ok(Launched {
            process,
            serial,
            virtio_log,
            spawned,
        })
    }

    /// Starts QEMU. The child is killed when the returned handle is dropped (also on panic or
    /// an early `?`), and stdout/stderr go to `stderr_log`.
    pub fn spawn(&self, stderr_log: &Path) -> Result<QemuProcess> {
        spawn(&self.binary, self.args(), stderr_log)
    }
}
/// A started QEMU with its console connections.
pub struct Launched {
    /// The QEMU process; dropping it kills QEMU.
    pub process: QemuProcess,
    /// The serial console's connection.
    pub serial: UnixStream,
    /// Anaconda's log port, when the configuration has one.
    pub virtio_log: Option<UnixStream>,
    /// When QEMU was started.
    pub spawned: Instant,
}

/// A qcow2 overlay backed by `image`, so a VM can write without touching the image
/// (boot-test, upgrade-test).
pub fn create_overlay(image: &Path, overlay: &Path) -> Result<()> {
    let image = std::fs::canonicalize(image)
        .with_context(|| format!("opening image {}", image.display()))?;
    let format = detect_format(&image)?;
    std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(&image)
        .arg(overlay)
        .run_checked()
        .with_context(|| format!("creating an overlay of {}", image.display()))?;
    Ok(())
}

/// "qcow2", "vpc" (a fixed VHD: its footer is the last 512 bytes) or "raw", from the file's
/// magic, so the overlay names its backing format (QEMU refuses to probe raw backing files).
fn detect_format(image: &Path) -> Result<&'static str> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 4];
    let mut file =
        std::fs::File::open(image).with_context(|| format!("opening image {}", image.display()))?;
    let n = file
        .read(&mut magic)
        .with_context(|| format!("reading image {}", image.display()))?;
    if n == 0 {
        bail!("image {} is empty", image.display());
    }
    if magic == *b"QFI\xfb" {
        return Ok("qcow2");
    }
    let len = file
        .metadata()
        .with_context(|| format!("reading image {}", image.display()))?
        .len();
    let mut cookie = [0u8; 8];
    if len >= 1024 && file.read_exact_at(&mut cookie, len - 512).is_ok() && cookie == *b"conectix" {
        return Ok("vpc");
    }
    Ok("raw")
}

/// QEMU's option parser splits on `,`; a literal comma is written `,,`.
fn escape_opt(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_the_contract() {
        let c = QemuConfig {
            binary: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            memory_mib: 1024,
            cpus: 1,
            disk: "/o/disk,1.qcow2".into(),
            cdrom: Some("/m/boot.iso".into()),
            boot: Boot::Kernel {
                kernel: "/k".into(),
                initrd: "/i".into(),
                append: "inst.ks=x console=ttyS0".into(),
            },
            serial_socket: "/s/serial".into(),
            virtio_log_socket: Some("/s/vlog".into()),
            qmp_socket: Some("/s/qmp".into()),
            network: true,
        };
        let line = c.display();
        for want in [
            "-no-reboot",
            "-display none",
            "name=org.fedoraproject.anaconda.log.0",
            "-qmp unix:/s/qmp,server=on,wait=off",
            "file=/o/disk,,1.qcow2,if=virtio,format=qcow2",
            "media=cdrom,readonly=on",
            "-netdev user,id=net0",
            "accel=tcg",
            "'inst.ks=x console=ttyS0'",
        ] {
            assert!(line.contains(want), "{want} missing in {line}");
        }
    }
}
