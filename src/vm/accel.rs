//! Accelerator choice: KVM only when it really works, else TCG.
//!
//! On the project's machines `/dev/kvm` opens but QEMU hangs (or aborts) with it, so opening
//! the device is not enough (Packer's check). The probe boots a tiny VM with no disk, with
//! the CPU model the install uses (`-cpu host`: on these machines it aborts on an MSR), and
//! waits with a short deadline for SeaBIOS to reach "No bootable device" on its debug port
//! 0x402. Seeing only the banner is not enough: here SeaBIOS starts under KVM and then hangs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// The accelerator asked for: `--accel` of install, boot-test and upgrade-test, and the image
/// definition's `vm.accel`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[allow(
    missing_docs,
    reason = "a `///` on a variant would become `--help` text for the value"
)]
pub enum AccelChoice {
    // Plain comments, not `///` (see the `allow` above).
    // KVM when a probe VM really runs under it, else TCG.
    Auto,
    // KVM, or an error when the probe VM does not run under it.
    Kvm,
    // Software emulation; no probe.
    Tcg,
}

/// The accelerator chosen: what [`choose`] made of an [`AccelChoice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm (the probe showed that it works).
    Kvm,
    /// QEMU's software emulation: always available, several times slower.
    Tcg,
}

/// An accelerator already probed, asked for again by name (the build probes once and hands
/// the result to each VM stage).
impl From<Accel> for AccelChoice {
    fn from(accel: Accel) -> AccelChoice {
        match accel {
            Accel::Kvm => AccelChoice::Kvm,
            Accel::Tcg => AccelChoice::Tcg,
        }
    }
}

impl Accel {
    /// The name QEMU's `-machine accel=` takes (also shown in messages).
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// How long a probe VM gets to show that it runs.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The result of choosing an accelerator; `notice` is what to tell the user (once) when
/// `auto` fell back to TCG.
#[derive(Debug, Clone)]
pub struct AccelDecision {
    /// The accelerator the VMs run under.
    pub accel: Accel,
    /// Set when `auto` fell back to TCG: why, to tell the user once.
    pub notice: Option<String>,
}

/// Resolves `choice`: `tcg` as it is; `kvm` only if [`kvm_works`], else an error; `auto`
/// KVM if it works, else TCG with a notice. `qemu` is the binary to probe, `scratch` a
/// folder for the probe VMs' files.
pub async fn choose(choice: AccelChoice, qemu: &Path, scratch: &Path) -> Result<AccelDecision> {
    match choice {
        AccelChoice::Tcg => Ok(AccelDecision {
            accel: Accel::Tcg,
            notice: None,
        }),
        AccelChoice::Kvm => match kvm_works(qemu, scratch).await {
            Ok(()) => Ok(AccelDecision {
                accel: Accel::Kvm,
                notice: None,
            }),
            Err(why) => {
                bail!("--accel kvm: KVM is not usable here: {why}; use --accel tcg (or auto)")
            }
        },
        AccelChoice::Auto => match kvm_works(qemu, scratch).await {
            Ok(()) => Ok(AccelDecision {
                accel: Accel::Kvm,
                notice: None,
            }),
            Err(why) => Ok(AccelDecision {
                accel: Accel::Tcg,
                notice: Some(format!(
                    "KVM not usable ({why}): using TCG (software emulation, several times slower; timeouts scaled)"
                )),
            }),
        },
    }
}

/// How long a probe kernel gets to print its first console line under KVM (well under a
/// second where KVM works; a broken nested KVM hangs before any output).
pub const KERNEL_PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// Ok when /dev/kvm opens, a probe VM executes guest code within [`PROBE_TIMEOUT`], and (when
/// the host has a readable kernel) a Linux kernel boots under KVM to its first panic.
pub async fn kvm_works(qemu: &Path, scratch: &Path) -> std::result::Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm cannot be opened: {e}"));
    }
    // KVM does not start or stop working while the host runs: one verdict per host boot
    // and QEMU binary, so that every VM command does not pay the probes again.
    let cache = verdict_cache(qemu);
    if let Some(cached) = cache.as_ref().and_then(|c| std::fs::read_to_string(c).ok()) {
        return match cached.strip_prefix("broken: ") {
            Some(why) => Err(format!("{} (cached verdict of this host boot)", why.trim())),
            None => Ok(()),
        };
    }
    let verdict = probe_kvm(qemu, scratch).await;
    if let Some(cache) = cache {
        let text = match &verdict {
            Ok(()) => "works\n".to_string(),
            Err(why) => format!("broken: {why}\n"),
        };
        let _ = crate::fsutil::write_atomic(&cache, text.as_bytes());
    }
    verdict
}

/// `$TMPDIR/atomic-factory-kvm-<uid>-<boot id>-<hash of the QEMU path>`.
fn verdict_cache(qemu: &Path) -> Option<std::path::PathBuf> {
    use sha2::Digest as _;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let qemu_id = format!("{}", qemu.display());
    let hash = hex::encode(&sha2::Sha256::digest(qemu_id.as_bytes())[..6]);
    let uid = rustix::process::getuid().as_raw();
    Some(std::env::temp_dir().join(format!(
        "atomic-factory-kvm-{uid}-{}-{hash}",
        boot_id.trim()
    )))
}

async fn probe_kvm(qemu: &Path, scratch: &Path) -> std::result::Result<(), String> {
    probe_vm(qemu, "kvm", scratch, PROBE_TIMEOUT).await?;
    // Nested KVM can run a BIOS and still fail on a kernel ("KVM internal error. Suberror: 1"
    // on `lock cmpxchg16b`, seen on the project's machines): QEMU then pauses forever.
    match host_kernel() {
        Some(kernel) => probe_kernel(qemu, &kernel, scratch, KERNEL_PROBE_TIMEOUT).await,
        None => Ok(()),
    }
}

/// A kernel of the host's that we may read, for the kernel probe.
fn host_kernel() -> Option<std::path::PathBuf> {
    let mut candidates: Vec<std::path::PathBuf> = vec!["/boot/vmlinuz".into(), "/vmlinuz".into()];
    if let Ok(entries) = std::fs::read_dir("/boot") {
        let mut more: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .collect();
        more.sort();
        candidates.extend(more);
    }
    candidates
        .into_iter()
        .find(|p| std::fs::File::open(p).is_ok())
}

/// Boots `kernel` without a root file system: it must print its banner within `timeout`.
pub async fn probe_kernel(
    qemu: &Path,
    kernel: &Path,
    scratch: &Path,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let log = scratch.join("accel-probe-kernel.log");
    let mut args: Vec<std::ffi::OsString> =
        ["-m", "256", "-machine", "pc,accel=kvm", "-cpu", "host"]
            .iter()
            .map(Into::into)
            .collect();
    args.extend(["-kernel".into(), kernel.into(), "-append".into()]);
    args.push("console=ttyS0 panic=-1 root=/dev/nonexistent".into());
    args.extend(["-serial".into(), format!("file:{}", log.display()).into()]);
    let what = format!("a probe kernel ({}) under KVM", kernel.display());
    match watch_probe(qemu, &args, &log, timeout, |out| {
        contains(out, b"Linux version")
    })
    .await?
    {
        ProbeEnd::Up => Ok(()),
        ProbeEnd::Stopped(line) => Err(format!("{what} stopped: {line}")),
        ProbeEnd::Exited { stderr, .. } => Err(format!(
            "{what} exited before its banner: {}",
            stderr.lines().next().unwrap_or("no message")
        )),
        ProbeEnd::TimedOut => Err(format!(
            "{what} did not boot within {} s (QEMU hangs)",
            timeout.as_secs()
        )),
    }
}

/// Boots a disk-less VM with `accel` and waits for SeaBIOS to give up booting (it ran).
pub async fn probe_vm(
    qemu: &Path,
    accel: &str,
    scratch: &Path,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let log = scratch.join(format!("accel-probe-{accel}.log"));
    let mut args: Vec<std::ffi::OsString> = vec!["-m".into(), "32".into(), "-machine".into()];
    args.push(format!("pc,accel={accel}").into());
    if accel == "kvm" {
        args.extend(["-cpu".into(), "host".into()]);
    }
    args.extend([
        "-chardev".into(),
        format!("file,id=dbg,path={}", log.display()).into(),
    ]);
    args.extend([
        "-device".into(),
        "isa-debugcon,iobase=0x402,chardev=dbg".into(),
    ]);
    let ran = |out: &[u8]| contains(out, b"No bootable device") || contains(out, b"Booting from");
    match watch_probe(qemu, &args, &log, timeout, ran).await? {
        ProbeEnd::Up => Ok(()),
        // A VM paused on a KVM error never finishes its BIOS: said at once, not at the deadline.
        ProbeEnd::Stopped(_) | ProbeEnd::TimedOut => {
            let out = std::fs::read(&log).unwrap_or_default();
            Err(format!(
                "a probe VM with accel={accel} did not finish its BIOS within {} s (QEMU hangs{})",
                timeout.as_secs(),
                if contains(&out, b"SeaBIOS") {
                    " after the BIOS started"
                } else {
                    ""
                }
            ))
        }
        ProbeEnd::Exited { status, stderr } => {
            let lines: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            Err(format!(
                "a probe VM with accel={accel} exited ({status}): {}",
                lines.join("; ")
            ))
        }
    }
}

/// How a probe VM ended.
enum ProbeEnd {
    /// Its log showed that the guest ran.
    Up,
    /// QEMU said "KVM internal error" (it then pauses the VM and stays alive): the line.
    Stopped(String),
    Exited {
        status: std::process::ExitStatus,
        stderr: String,
    },
    TimedOut,
}

/// Starts QEMU with `args` (after the common head-less options), polls `log` until `up`
/// accepts it, QEMU exits or stops on a KVM error, or `timeout` passes; then kills QEMU and
/// removes the probe's files. Err only when QEMU cannot be started.
async fn watch_probe(
    qemu: &Path,
    args: &[std::ffi::OsString],
    log: &Path,
    timeout: Duration,
    up: impl Fn(&[u8]) -> bool,
) -> std::result::Result<ProbeEnd, String> {
    let err_log = log.with_extension("stderr");
    let _ = std::fs::remove_file(log);
    let args = super::process::HEADLESS
        .iter()
        .map(Into::into)
        .chain(args.iter().cloned());
    let mut child = super::process::spawn(qemu, args, &err_log).map_err(|e| format!("{e:#}"))?;
    let start = Instant::now();
    let end = loop {
        if up(&std::fs::read(log).unwrap_or_default()) {
            break ProbeEnd::Up;
        }
        let err = std::fs::read_to_string(&err_log).unwrap_or_default();
        if let Some(line) = err.lines().find(|l| l.contains("KVM internal error")) {
            break ProbeEnd::Stopped(line.trim().to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // What the guest printed before QEMU went may still count.
            if up(&std::fs::read(log).unwrap_or_default()) {
                break ProbeEnd::Up;
            }
            let stderr = std::fs::read_to_string(&err_log).unwrap_or_default();
            break ProbeEnd::Exited { status, stderr };
        }
        if start.elapsed() > timeout {
            break ProbeEnd::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().await;
    let _ = std::fs::remove_file(log);
    let _ = std::fs::remove_file(&err_log);
    Ok(end)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe must recognise a VM that runs: TCG always does.
    #[tokio::test]
    async fn probe_sees_a_running_tcg_vm() {
        let dir = tempfile::tempdir().unwrap();
        probe_vm(
            Path::new("qemu-system-x86_64"),
            "tcg",
            dir.path(),
            Duration::from_secs(20),
        )
        .await
        .expect("TCG probe VM should run (qemu-system-x86_64 missing? run vm/prepare)");
    }
}
