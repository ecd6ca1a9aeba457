//! Acceptance tests of `install` (issue 5), under TCG, with the stand-in installer and
//! distribution that `vm/prepare` builds. The VM tests of this file run one at a time, and
//! alone (`vm::exclusive`).
//!
//! The repository is made with the real `ostree commit` from the extracted stand-in RPMs
//! (until compose lands); the installed disk is checked from the host with `qemu-img`,
//! `sfdisk`, `debugfs` and `ostree fsck`, without mounting anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use atomic_factory::vm::install::{self, InstallConfig, KsVia, MediaSource};

use crate::support::vm::{self, REF, installer, kickstart, test_repo};
use crate::support::{capture, run};

fn config(dir: &Path, ks: PathBuf) -> InstallConfig {
    let mut c = vm::install_config(dir, ks);
    c.repo = Some(test_repo().to_path_buf());
    c.ostree_ref = Some(REF.into());
    c.inactivity_timeout = Some(Duration::from_secs(120));
    c
}

/// Acceptance 7: no QEMU that uses this run's disk, and the guest server is closed.
fn assert_nothing_left(disk: &Path) {
    let logs = {
        let mut s = disk.as_os_str().to_owned();
        s.push(".logs");
        PathBuf::from(s)
    };
    let needle = disk.file_name().unwrap().to_string_lossy().into_owned();
    let dir = disk.parent().unwrap().to_string_lossy().into_owned();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            assert!(
                !(cmd.contains("qemu-system") && cmd.contains(&dir) && cmd.contains(&needle)),
                "QEMU still running after the install: {}",
                p.path().display()
            );
        }
    }
    if let Ok(ks) = std::fs::read_to_string(logs.join("qemu-cmdline"))
        && let Some(i) = ks.find("10.0.2.2:")
    {
        let port: String = ks[i + 9..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let port: u16 = port.parse().unwrap();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the guest server on port {port} is still accepting connections"
        );
    }
}

/// Checks the installed disk from the host: partitions, deployment, bootloader config and
/// the system repository (`ostree fsck` on an rdump'ed copy). Returns the raw image.
fn check_installed_disk(dir: &Path, disk: &Path) -> PathBuf {
    run(Command::new("qemu-img").arg("check").arg(disk));
    let raw = dir.join("disk.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(disk)
        .arg(&raw));
    let parts = vm::partition_offsets(&raw);
    assert_eq!(parts.len(), 2, "expected /boot and / partitions");
    let deploys = vm::debugfs(&raw, parts[1], "ls -l /ostree/deploy/standin/deploy");
    assert!(
        deploys.contains(".0"),
        "no deployment on the disk:\n{deploys}"
    );
    let cfg = vm::debugfs(&raw, parts[0], "cat /loader.1/syslinux.cfg");
    assert!(
        cfg.contains("ostree=/ostree/boot.1/standin/"),
        "bootloader config:\n{cfg}"
    );
    assert!(
        cfg.contains("console=ttyS0"),
        "bootloader --append missing:\n{cfg}"
    );
    let copy = dir.join("rdump");
    std::fs::create_dir_all(&copy).unwrap();
    vm::debugfs(
        &raw,
        parts[1],
        &format!("rdump /ostree/repo {}", copy.display()),
    );
    let sysrepo = format!("--repo={}", copy.join("repo").display());
    run(Command::new("ostree").arg(&sysrepo).arg("fsck"));
    let installed = capture(
        Command::new("ostree")
            .arg(&sysrepo)
            .args(["rev-parse", &format!("standin:{REF}")]),
    );
    let served = capture(
        Command::new("ostree")
            .arg(format!("--repo={}", test_repo().display()))
            .args(["rev-parse", REF]),
    );
    assert_eq!(
        installed.trim(),
        served.trim(),
        "the disk holds another commit than the served one"
    );
    raw
}

/// Boots the installed disk (no network) and returns its console.
fn boot(dir: &Path, disk: &Path) -> String {
    let log = dir.join("boot.log");
    let status = Command::new("timeout")
        .args([
            "300",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            "512",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,snapshot=on", disk.display()))
        .stdin(std::process::Stdio::null())
        .status()
        .expect("qemu-system-x86_64 missing: run vm/prepare");
    assert!(status.success(), "boot VM: {status}");
    String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned()
}

/// Acceptance 1: the demo-style kickstart over HTTP: success, the disk holds the
/// deployment, %post ran in the deployment, and the disk boots to the ready marker.
#[test]
fn install_standin_over_http_and_boot() {
    let _vms = vm::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let ks = kickstart(dir.path(), "http://10.0.2.2/repo", "");
    let cfg = config(dir.path(), ks);
    let outcome = install::run(&cfg).unwrap_or_else(|e| panic!("install failed: {e:#}"));
    assert_nothing_left(&cfg.output);
    assert!(cfg.output.is_file());
    assert!(!dir.path().join("disk.qcow2.partial").exists());
    assert_eq!(
        outcome.objects_fetched, outcome.objects_total,
        "progress total must match what the guest fetched"
    );
    assert!(outcome.objects_total > 5);
    let vlog = std::fs::read_to_string(outcome.logs_dir.join("virtio.log")).unwrap();
    assert!(
        vlog.contains("post in chroot: NAME=StandinOS"),
        "%post did not run in the deployment:\n{vlog}"
    );
    let access = std::fs::read_to_string(outcome.logs_dir.join("http-access.log")).unwrap();
    assert!(access.contains("GET /ks.cfg 200"));
    check_installed_disk(dir.path(), &cfg.output);
    let console = boot(dir.path(), &cfg.output);
    assert!(
        console.contains("=== STANDIN-OSTREE-BOOT-OK ==="),
        "installed disk did not boot:\n{console}"
    );
    assert!(console.contains("ostree-booted: yes"), "{console}");
}

/// Acceptance 2: the same through a boot.iso built with xorriso (label with a space), the
/// kickstart in a cpio appended to the initrd.
#[test]
fn install_from_boot_iso_with_kickstart_in_initrd() {
    let _vms = vm::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = installer();
    let tree = dir.path().join("iso/images/pxeboot");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::copy(&kernel, tree.join("vmlinuz")).unwrap();
    std::fs::copy(&initrd, tree.join("initrd.img")).unwrap();
    let iso = dir.path().join("boot.iso");
    run(Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-R",
            "-J",
            "-V",
            "Standin Boot 1",
            "-o",
        ])
        .arg(&iso)
        .arg(dir.path().join("iso")));
    let ks = kickstart(dir.path(), "http://10.0.2.2/repo", "");
    let mut cfg = config(dir.path(), ks);
    cfg.media = MediaSource::Iso(iso);
    cfg.ks_via = KsVia::Initrd;
    let outcome = install::run(&cfg).unwrap_or_else(|e| panic!("install from ISO failed: {e:#}"));
    assert_nothing_left(&cfg.output);
    let cmdline = std::fs::read_to_string(outcome.logs_dir.join("qemu-cmdline")).unwrap();
    assert!(
        cmdline.contains(r"inst.stage2=hd:LABEL=Standin\x20Boot\x201"),
        "{cmdline}"
    );
    assert!(
        cmdline.contains("inst.ks=file:/ks.cfg") && cmdline.contains("media=cdrom,readonly=on"),
        "{cmdline}"
    );
    let access = std::fs::read_to_string(outcome.logs_dir.join("http-access.log")).unwrap();
    assert!(
        !access.contains("/ks.cfg"),
        "the kickstart should come from the initrd:\n{access}"
    );
    check_installed_disk(dir.path(), &cfg.output);
}

/// Acceptance 3: a wrong ostreesetup URL fails within 60 s with the installer's error lines.
#[test]
fn wrong_ostree_url_fails_fast_with_the_installer_lines() {
    let _vms = vm::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let ks = kickstart(dir.path(), "http://10.0.2.2/no-such-repo", "");
    let cfg = config(dir.path(), ks);
    let t = Instant::now();
    let err = format!(
        "{:#}",
        install::run(&cfg).expect_err("install with a wrong URL must fail")
    );
    let took = t.elapsed();
    assert_nothing_left(&cfg.output);
    assert!(took < Duration::from_secs(60), "took {took:?}: {err}");
    assert!(err.contains("STANDIN-INSTALL-FAILED:"), "{err}");
    assert!(
        err.contains("ostree") && err.contains("pull"),
        "the failing command is not named: {err}"
    );
    assert!(err.contains("never fetched the repository"), "{err}");
    assert!(
        !cfg.output.exists() && !dir.path().join("disk.qcow2.partial").exists(),
        "a failed install left a disk"
    );
}

/// Acceptance 4 and 6 (auto): a hanging installer hits the inactivity timeout, a screendump
/// is saved, QEMU is gone; `--accel auto` fell back to TCG saying so once.
#[test]
fn hanging_installer_hits_inactivity_timeout_via_cli_with_accel_auto() {
    let _vms = vm::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = installer();
    let ks = kickstart(dir.path(), "http://10.0.2.2/repo", "");
    let out = dir.path().join("disk.qcow2");
    let t = Instant::now();
    let res = Command::new(env!("CARGO_BIN_EXE_atomic-factory"))
        .arg("install")
        .arg("--ks")
        .arg(&ks)
        .arg("--repo")
        .arg(test_repo())
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .args([
            "--karg",
            "standin.hang",
            "--accel",
            "auto",
            "--inactivity-timeout",
            "15",
            "--timeout",
            "300",
        ])
        .args(["--memory", "1024", "--cpus", "1", "--disk-size", "1G", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success(),
        "a hanging install must fail:\n{stderr}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(200),
        "took {:?}",
        t.elapsed()
    );
    assert_nothing_left(&out);
    assert!(stderr.contains("inactivity timeout"), "{stderr}");
    let logs = dir.path().join("disk.qcow2.logs");
    let shot = logs.join("screendump.png");
    assert!(
        stderr.contains(&shot.display().to_string()),
        "the screendump is not named:\n{stderr}"
    );
    let png = std::fs::read(&shot).expect("screendump.png missing");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "screendump is not a PNG");
    let last = std::fs::read_to_string(logs.join("last-lines.log")).unwrap();
    assert!(last.contains("standin.hang given"), "{last}");
    assert!(stderr.contains("last-lines.log"), "{stderr}");
    // --accel auto: KVM does not work on the project's machines, so TCG with one notice.
    let cmdline = std::fs::read_to_string(logs.join("qemu-cmdline")).unwrap();
    if atomic_factory::vm::accel::kvm_works(Path::new("qemu-system-x86_64"), dir.path())
        .await_blocking()
        .is_err()
    {
        assert!(cmdline.contains("accel=tcg"), "{cmdline}");
        assert_eq!(
            stderr.matches("KVM not usable").count(),
            1,
            "exactly one TCG notice expected:\n{stderr}"
        );
    } else {
        assert!(cmdline.contains("accel=kvm"), "{cmdline}");
    }
    assert!(!out.exists());
}

/// Acceptance 5: an installer that powers off without the token is a failure.
#[test]
fn poweroff_without_token_is_no_success_signal() {
    let _vms = vm::exclusive();
    let dir = tempfile::tempdir().unwrap();
    // Runs before the injected token %post and powers the VM off.
    let ks = kickstart(
        dir.path(),
        "http://10.0.2.2/repo",
        "%post --nochroot\npoweroff -f\n%end\n",
    );
    let cfg = config(dir.path(), ks);
    let err = format!(
        "{:#}",
        install::run(&cfg).expect_err("a poweroff without the token must fail")
    );
    assert_nothing_left(&cfg.output);
    assert!(err.contains("no success signal"), "{err}");
    assert!(err.contains("powered off"), "{err}");
    assert!(
        !cfg.output.exists(),
        "no disk may be left without the success signal"
    );
}

/// Acceptance 6 (kvm): `--accel kvm` fails clearly (and fast) where KVM does not work.
#[test]
fn accel_kvm_fails_clearly_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = installer();
    let ks = kickstart(dir.path(), "http://10.0.2.2/repo", "");
    let kvm_ok = atomic_factory::vm::accel::kvm_works(Path::new("qemu-system-x86_64"), dir.path())
        .await_blocking();
    let out = dir.path().join("disk.qcow2");
    let t = Instant::now();
    let res = Command::new(env!("CARGO_BIN_EXE_atomic-factory"))
        .arg("install")
        .arg("--ks")
        .arg(&ks)
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .args(["--accel", "kvm", "--timeout", "5", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert_nothing_left(&out);
    if kvm_ok.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "took {:?}",
            t.elapsed()
        );
        assert!(
            stderr.contains("--accel kvm: KVM is not usable here"),
            "{stderr}"
        );
        assert!(
            stderr.contains("--accel tcg"),
            "the fix is not named: {stderr}"
        );
    }
}

/// Runs a future to completion on a small runtime (the probe is async).
trait AwaitBlocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self)
    }
}
impl<F: std::future::Future> AwaitBlocking for F {}

/// Environment error: the chosen port is taken. Named, with the fix, before any VM starts.
#[test]
fn port_in_use_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ks = kickstart(dir.path(), "http://10.0.2.2/repo", "");
    let mut cfg = config(dir.path(), ks);
    cfg.port = taken.local_addr().unwrap().port();
    let err = format!(
        "{:#}",
        install::run(&cfg).expect_err("a taken port must fail")
    );
    assert!(
        err.contains(&format!("port {} on 127.0.0.1 is in use", cfg.port)),
        "{err}"
    );
    assert!(err.contains("--port 0"), "{err}");
    assert!(!cfg.output.exists());
}

/// Environment error: installer media without a kernel.
#[test]
fn iso_without_kernel_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("iso/LiveOS");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("squashfs.img"), b"not a kernel").unwrap();
    let iso = dir.path().join("live.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", "Live", "-o"])
        .arg(&iso)
        .arg(dir.path().join("iso")));
    let ks = kickstart(dir.path(), "http://10.0.2.2/repo", "");
    let mut cfg = config(dir.path(), ks);
    cfg.media = MediaSource::Iso(iso.clone());
    let err = format!(
        "{:#}",
        install::run(&cfg).expect_err("an ISO without a kernel must fail")
    );
    assert!(
        err.contains(&iso.display().to_string()) && err.contains("has no kernel"),
        "{err}"
    );
    assert!(err.contains("images/pxeboot/vmlinuz"), "{err}");
    assert!(!cfg.output.exists() && !dir.path().join("disk.qcow2.partial").exists());
}
