//! For the tests that run VMs (install, upgrade-test, boot-test, build): the lock that keeps
//! their VMs apart, the stand-in fixtures, a test repository made with the real `ostree
//! commit`, kickstarts, and looks into installed disks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{capture, root, run};

/// The ref of the stand-in distribution in [`test_repo`].
pub const REF: &str = "standin/x86_64/demo";

/// Taken by every test that runs a VM. The machines have 2 cores, and tests of one area
/// look for leftover QEMUs by names another area's VMs use too (upgrade-test's overlays are
/// the build's upgrade-test stage's too), so areas never overlap. Before the tests became
/// one binary each area was its own process, which cargo ran one after the other.
static VMS: RwLock<()> = RwLock::new(());

/// For a test whose VMs must run alone: install and upgrade-test (one VM at a time, as
/// each area always ran), boot-test (whose timeouts are tight).
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    VMS.write().unwrap_or_else(|e| e.into_inner())
}

/// For a build test: builds run alongside each other (each in its own copy of the demo,
/// as their area always ran), never alongside another area's VMs.
pub fn shared_with_builds() -> RwLockReadGuard<'static, ()> {
    VMS.read().unwrap_or_else(|e| e.into_inner())
}

/// `path`, which vm/prepare makes; fails naming vm/prepare when it is missing.
pub fn need(path: &Path) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run vm/prepare (it builds the stand-in fixtures)",
        path.display()
    );
    path.to_path_buf()
}

/// The stand-in installer's kernel and initramfs.
pub fn installer() -> (PathBuf, PathBuf) {
    let d = root().join("vm/out/standin");
    (need(&d.join("vmlinuz")), need(&d.join("installer.img")))
}

/// The stand-in distribution committed with the real `ostree commit` (built once per test
/// run), in `<dir>/repo`.
pub fn test_repo() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let pkgs = need(&root().join("vm/out/distro/repo/Packages"));
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("install-repo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let tree = base.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        for rpm in std::fs::read_dir(&pkgs).unwrap() {
            let rpm = rpm.unwrap().path();
            run(Command::new("sh").arg("-c").arg(format!(
                "rpm2cpio '{}' | (cd '{}' && cpio -idm --quiet)",
                rpm.display(),
                tree.display()
            )));
        }
        // What rpm-ostree does: /etc moves to /usr/etc in the commit.
        std::fs::rename(tree.join("etc"), tree.join("usr/etc")).unwrap();
        let repo = base.join("repo");
        let r = format!("--repo={}", repo.display());
        run(Command::new("ostree")
            .arg(&r)
            .args(["init", "--mode=archive"]));
        run(Command::new("ostree").arg(&r).args([
            "commit",
            "-b",
            REF,
            "--owner-uid=0",
            "--owner-gid=0",
            "-s",
            "stand-in demo",
            &format!("--tree=dir={}", tree.display()),
        ]));
        run(Command::new("ostree").arg(&r).args(["summary", "-u"]));
        std::fs::remove_dir_all(&tree).unwrap();
        repo
    })
}

/// A demo-style kickstart; `extra` goes before `poweroff`.
pub fn kickstart(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let ks = format!(
        "text\nzerombr\nclearpart --all --initlabel\npart /boot --fstype=ext4 --size=256\npart / --fstype=ext4 --grow\n\
         bootloader --append=\"console=ttyS0\"\n\
         ostreesetup --osname=standin --remote=standin --url={url} --ref={REF} --nogpg\n\
         %post\necho \"post in chroot: $(cat /etc/os-release | head -n 1)\"\n%end\n{extra}poweroff\n"
    );
    let p = dir.join("ks.cfg");
    std::fs::write(&p, ks).unwrap();
    p
}

/// Byte offsets of the partitions of a raw disk image, in table order.
pub fn partition_offsets(raw: &Path) -> Vec<u64> {
    let json = capture(Command::new("sfdisk").arg("-J").arg(raw));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["start"].as_u64().unwrap() * 512)
        .collect()
}

/// Runs one debugfs request on the ext4 file system at `offset` in a raw image (no mount);
/// returns its stdout as printed (`cat` of a file: the file).
pub fn debugfs(raw: &Path, offset: u64, request: &str) -> String {
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(format!("{}?offset={offset}", raw.display())));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An install of the stand-in installer under TCG into `dir/disk.qcow2`: 2 GiB disk,
/// 1 GiB of memory, one CPU, ten minutes at most.
pub fn install_config(dir: &Path, ks: PathBuf) -> atomic_factory::vm::install::InstallConfig {
    use atomic_factory::vm::install::{InstallConfig, MediaSource};
    let (kernel, initrd) = installer();
    let mut c = InstallConfig::new(
        ks,
        MediaSource::Kernel {
            kernel,
            initrd,
            stage2: None,
        },
        dir.join("disk.qcow2"),
    );
    c.disk_size = 2 << 30;
    c.memory_mib = 1024;
    c.cpus = 1;
    c.accel = atomic_factory::vm::accel::AccelChoice::Tcg;
    c.timeout = Some(std::time::Duration::from_secs(600));
    c
}
