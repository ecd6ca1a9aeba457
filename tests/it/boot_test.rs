//! `atomic-factory boot-test` against real QEMU (TCG): tiny bootable disks made here with
//! syslinux on FAT (no mounts, no root needed), whose init passes, panics or stays silent.
//! The tests that boot run alone (`vm::exclusive`): their timeouts are tight.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::{BIN, capture, require, root, run, vm};

/// The Debian cloud kernel that vm/prepare installs (linux-image-cloud-amd64).
fn kernel() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .expect("reading /boot")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("vmlinuz-") && name.ends_with("-cloud-amd64")
        })
        .collect();
    found.sort();
    found.pop().expect(
        "no /boot/vmlinuz-*-cloud-amd64: run vm/prepare (it installs linux-image-cloud-amd64)",
    )
}

/// A 64 MiB FAT disk that SeaBIOS boots through syslinux into a busybox initramfs
/// running `init_script`.
fn make_disk(dir: &Path, name: &str, init_script: &str) -> PathBuf {
    require(&[
        "mkfs.vfat",
        "syslinux",
        "mcopy",
        "cpio",
        "busybox",
        "qemu-system-x86_64",
        "qemu-img",
    ]);
    let root = dir.join(format!("{name}-initramfs"));
    std::fs::create_dir_all(root.join("bin")).unwrap();
    for d in ["proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = capture(Command::new("sh").args(["-c", "command -v busybox"]));
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("init"), format!("#!/bin/sh\n{init_script}\n")).unwrap();
    run(Command::new("chmod").arg("755").arg(root.join("init")));
    let initrd = dir.join(format!("{name}-initrd.img"));
    run(Command::new("sh").current_dir(&root).arg("-c").arg(format!(
        "find . | cpio -o -H newc --quiet > '{}'",
        initrd.display()
    )));

    let disk = dir.join(format!("{name}.img"));
    run(Command::new("truncate").args(["-s", "64M"]).arg(&disk));
    run(Command::new("mkfs.vfat")
        .args(["-n", "BOOTTEST"])
        .arg(&disk));
    run(Command::new("syslinux").arg("--install").arg(&disk));
    let cfg = dir.join(format!("{name}-syslinux.cfg"));
    std::fs::write(
        &cfg,
        "DEFAULT linux\nPROMPT 0\nTIMEOUT 1\nLABEL linux\n  KERNEL vmlinuz\n  INITRD initrd.img\n  APPEND console=ttyS0 quiet\n",
    )
    .unwrap();
    let image = format!("{}", disk.display());
    run(Command::new("mcopy")
        .args(["-i", &image])
        .arg(kernel())
        .arg("::vmlinuz"));
    run(Command::new("mcopy")
        .args(["-i", &image])
        .arg(&initrd)
        .arg("::initrd.img"));
    run(Command::new("mcopy")
        .args(["-i", &image])
        .arg(&cfg)
        .arg("::syslinux.cfg"));
    disk
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

const GOOD_INIT: &str = "/bin/busybox mount -t proc proc /proc\necho '=== STANDIN-OSTREE-BOOT-OK ==='\n/bin/busybox poweroff -f";
// An init that exits makes the kernel panic ("Attempted to kill init!").
const PANIC_INIT: &str = "echo 'init: giving up'\nexit 1";
const SILENT_INIT: &str = "/bin/busybox sleep 3600";

#[test]
fn passing_image_passes_and_is_not_modified() {
    let _vms = vm::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let good = make_disk(dir.path(), "good", GOOD_INIT);
    // Also convert it to qcow2: boot-test must take both formats.
    let good_qcow2 = dir.path().join("good.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&good)
        .arg(&good_qcow2));
    let before = sha256(&good_qcow2);
    let out = Command::new(BIN)
        .arg("boot-test")
        .arg(&good_qcow2)
        .args(["--timeout", "120", "--log-dir"])
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boot-test failed on a good image: {stderr}"
    );
    assert!(stderr.contains("PASS"), "{stderr}");
    assert_eq!(
        sha256(&good_qcow2),
        before,
        "boot-test modified the image it booted"
    );
}

#[test]
fn panic_and_silence_fail_with_console_lines_and_valid_junit() {
    let _vms = vm::exclusive();
    require(&["xmllint"]);
    let dir = tempfile::tempdir().unwrap();
    let good = make_disk(dir.path(), "good", GOOD_INIT);
    let panics = make_disk(dir.path(), "panics", PANIC_INIT);
    let silent = make_disk(dir.path(), "silent", SILENT_INIT);
    let junit = dir.path().join("report.xml");
    let images_before: Vec<String> = [&good, &panics, &silent]
        .iter()
        .map(|p| sha256(p))
        .collect();
    let out = Command::new(BIN)
        .arg("boot-test")
        .args([&good, &panics, &silent])
        .args(["-j", "2", "--timeout", "25", "--junit"])
        .arg(&junit)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "boot-test passed although two images fail: {stderr}"
    );
    assert!(stderr.contains("2 of 3 image(s) failed"), "{stderr}");
    assert!(
        stderr.contains("panics.img") && stderr.contains("kernel panic on the console"),
        "{stderr}"
    );
    // The failure quotes the console, including the panic line itself.
    assert!(stderr.contains("Kernel panic - not syncing"), "{stderr}");
    assert!(
        stderr.contains("silent.img") && stderr.contains("timed out waiting for"),
        "{stderr}"
    );
    assert!(
        stderr.contains("PASS") && stderr.contains("good.img"),
        "{stderr}"
    );

    let schema = root().join("tests/fixtures/junit.xsd");
    let check = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(&junit)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "JUnit report does not validate: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");
    assert!(xml.contains("tests=\"3\" failures=\"2\""), "{xml}");
    let images_after: Vec<String> = [&good, &panics, &silent]
        .iter()
        .map(|p| sha256(p))
        .collect();
    assert_eq!(images_before, images_after, "boot-test modified an image");
}

#[test]
fn missing_image_and_bad_regex_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["boot-test", "/nonexistent/image.qcow2", "--log-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/image.qcow2"), "{stderr}");

    let out = Command::new(BIN)
        .args(["boot-test", "x.qcow2", "--expect", "(unclosed", "--log-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("(unclosed") && stderr.contains("regular expression"),
        "{stderr}"
    );
}
