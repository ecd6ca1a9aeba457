//! A QEMU process: started with the options every VM of ours shares, killed when its handle
//! is dropped or when we die, and always reaped. Below both the launcher (`qemu`) and the KVM
//! probe (`accel`), which start VMs of different shapes through it.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};

/// The options every VM of ours starts with: no default devices or user configuration, no
/// window, and an exit instead of a reboot.
pub const HEADLESS: [&str; 5] = [
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
];

/// Starts QEMU `binary` with `args`; the child is killed when the returned handle is dropped
/// (also on panic or an early `?`) or when we die, and its stdout and stderr go to
/// `stderr_log`. Every VM goes through here: install, boot-test, upgrade-test and the KVM probe.
pub fn spawn(
    binary: &Path,
    args: impl IntoIterator<Item = OsString>,
    stderr_log: &Path,
) -> Result<QemuProcess> {
    let log = std::fs::File::create(stderr_log)
        .with_context(|| format!("creating {}", stderr_log.display()))?;
    let log2 = log.try_clone()?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true);
    die_with_parent(cmd.as_std_mut());
    let child = cmd.spawn().with_context(|| {
        format!(
            "starting {} (is qemu-system-x86 installed? run vm/prepare)",
            binary.display()
        )
    })?;
    Ok(QemuProcess { child: Some(child) })
}

/// A running QEMU. Dropping it kills and reaps the process.
pub struct QemuProcess {
    child: Option<tokio::process::Child>,
}

impl QemuProcess {
    /// QEMU's process id; None once it has been reaped.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// QEMU's exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let child = self.child.as_mut().context("QEMU already reaped")?;
        Ok(child.try_wait()?)
    }

    /// Waits for QEMU to exit and returns its exit status.
    pub async fn wait(&mut self) -> Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("QEMU already reaped")?;
        Ok(child.wait().await?)
    }

    /// Kills QEMU and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Some(pid) = child.id()
        {
            // kill_on_drop sends SIGKILL but does not reap; reap synchronously so that no
            // QEMU (or zombie) is left when we return.
            let _ = child.start_kill();
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
    }
}

/// Makes the kernel SIGKILL the child when the thread that spawned it dies, so QEMU never
/// outlives us, even when we are SIGKILLed and no destructor runs. (Spawning threads here
/// live until their VM is reaped: tokio workers, or the boot-test thread of that image.)
#[allow(unsafe_code, reason = "pre_exec and prctl(PR_SET_PDEATHSIG)")]
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
