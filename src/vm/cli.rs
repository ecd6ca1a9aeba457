//! Command-line arguments for `install`, `boot-test` and `upgrade-test`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use super::accel::AccelChoice;
use super::install::{self, InstallConfig, KsVia, MediaSource};
use super::upgrade_test::UpgradeTestConfig;

/// Arguments of `atomic-factory install`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # the stand-in installer (vm/prepare builds it), kickstart over HTTP
  atomic-factory install --ks ks.cfg --repo repo --ref standin/x86_64/demo \\
      --kernel vm/out/standin/vmlinuz --initrd vm/out/standin/installer.img -o disk.qcow2
  # Anaconda from a boot.iso, kickstart inside the initrd, 20 GiB disk
  atomic-factory install --ks fedora.ks --repo repo --installer-iso boot.iso --ks-via initrd \\
      --disk-size 20G --memory 4096 -o fedora.qcow2

The kickstart must end the install with `poweroff`. Its `ostreesetup --url=http://10.0.2.2/repo`
(no port) is pointed at the served --repo (10.0.2.2 is the host as QEMU's user network shows
it); a URL with an explicit port or another host is left alone.
Logs go to <output>.logs/; the disk is written as <output>.partial and renamed on success.")]
pub struct InstallArgs {
    /// The rendered kickstart
    #[arg(long, value_name = "KS")]
    pub ks: PathBuf,
    /// The ostree repository to serve to the guest (at http://10.0.2.2:PORT/repo/)
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The ref the kickstart installs (checked to exist in --repo)
    #[arg(long = "ref", value_name = "REF")]
    pub ostree_ref: Option<String>,
    /// Installer boot.iso (kernel and initrd are read from images/pxeboot/)
    #[arg(long, value_name = "ISO", conflicts_with_all = ["kernel", "initrd", "stage2"])]
    pub installer_iso: Option<PathBuf>,
    /// Installer kernel (with --initrd)
    #[arg(long, requires = "initrd")]
    pub kernel: Option<PathBuf>,
    /// Installer initrd (with --kernel)
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// inst.stage2= value for a kernel+initrd install
    #[arg(long, requires = "kernel")]
    pub stage2: Option<String>,
    /// Size of the target disk (K, M, G, T suffixes; powers of 1024)
    #[arg(long, default_value = "8G", value_parser = parse_disk_size)]
    pub disk_size: u64,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 2048)]
    pub memory: u64,
    /// Guest CPUs
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Accelerator: auto uses KVM only if a probe VM really runs under it
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Overall time limit in seconds (default 1200 under KVM, 3600 under TCG)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Fail when the guest shows no log output, disk or network activity for this many
    /// seconds (default 300 under KVM, 600 under TCG)
    #[arg(long, value_name = "SECONDS")]
    pub inactivity_timeout: Option<u64>,
    /// The installed disk (qcow2)
    #[arg(short, long, value_name = "DISK")]
    pub output: PathBuf,
    /// How the installer gets the kickstart
    #[arg(long, value_enum, default_value_t = KsVia::Http)]
    pub ks_via: KsVia,
    /// Port on 127.0.0.1 for the guest's HTTP server (0 = any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Extra installer kernel argument (repeatable)
    #[arg(long = "karg", value_name = "ARG")]
    pub kargs: Vec<String>,
    /// The QEMU binary
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
}

impl InstallArgs {
    /// The [`InstallConfig`] these arguments ask for; an error without installer media or with
    /// under 256 MiB of memory.
    pub fn to_config(&self) -> Result<InstallConfig> {
        let media = match (&self.installer_iso, &self.kernel, &self.initrd) {
            (Some(iso), _, _) => MediaSource::Iso(iso.clone()),
            (None, Some(k), Some(i)) => MediaSource::Kernel {
                kernel: k.clone(),
                initrd: i.clone(),
                stage2: self.stage2.clone(),
            },
            _ => {
                bail!("no installer media: pass --installer-iso boot.iso, or --kernel and --initrd")
            }
        };
        if self.memory < 256 {
            bail!(
                "--memory {} MiB is too small for an installer (use at least 512)",
                self.memory
            );
        }
        let mut c = InstallConfig::new(self.ks.clone(), media, self.output.clone());
        c.repo = self.repo.clone();
        c.ostree_ref = self.ostree_ref.clone();
        c.disk_size = self.disk_size;
        c.memory_mib = self.memory;
        c.cpus = self.cpus.max(1);
        c.accel = self.accel;
        c.timeout = self.timeout.map(Duration::from_secs);
        c.inactivity_timeout = self.inactivity_timeout.map(Duration::from_secs);
        c.ks_via = self.ks_via;
        c.port = self.port;
        c.extra_kargs = self.kargs.clone();
        c.qemu = self.qemu.clone();
        Ok(c)
    }
}

/// `--disk-size` for clap: a size as [`crate::size::parse_size`] reads it, at least 1 MiB.
pub fn parse_disk_size(s: &str) -> Result<u64, String> {
    match crate::size::parse_size(s) {
        Ok(bytes) if bytes >= 1 << 20 => Ok(bytes),
        Ok(_) => Err(format!("`{s}`: a disk needs at least 1M")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Boot images on throwaway overlays and judge their serial console.
///
/// Each image boots in QEMU on a qcow2 overlay (the image is never modified). A boot passes
/// when every `--expect` regex has matched the console (default: a login prompt or the
/// stand-in's ready marker); it fails at once on a kernel panic, emergency mode, a failed
/// unit, an OOM kill or the other patterns kola looks for, on timeout, or when the VM exits
/// early. Exit code 0 only when every image passed.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory boot-test build/demo/demo.qcow2\n  atomic-factory boot-test a.qcow2 b.qcow2 -j 2 --junit report.xml\n  atomic-factory boot-test image.qcow2 --expect 'login:' --expect 'Reached target' --timeout 600"
)]
pub struct BootTestArgs {
    /// Images to boot (qcow2, raw or fixed VHD)
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A regex the console must print for a pass; repeat for several (all must match)
    #[arg(long = "expect", value_name = "REGEX")]
    pub expect: Vec<String>,
    /// Seconds to wait for the expected lines (per image)
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Write a JUnit XML report here
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Boot this many images at once
    #[arg(short = 'j', long = "jobs", default_value_t = 1)]
    pub jobs: usize,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Guest CPUs
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Accelerator: auto probes KVM and falls back to TCG
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Keep console logs here
    #[arg(long, value_name = "DIR", default_value = "boot-test-logs")]
    pub log_dir: PathBuf,
}

/// Arguments of `atomic-factory upgrade-test`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # upgrade an image to the ref's newest commit in the repository, roll back, JUnit report
  atomic-factory upgrade-test build/demo/previous/demo.qcow2 --repo build/demo/repo \\
      --ref standin/x86_64/demo --junit upgrade.xml
  # a given commit, with kola-style tests run after boot and again after the upgrade
  atomic-factory upgrade-test image.qcow2 --repo repo --ref fedora/x86_64/coreos \\
      --to 5f1c0e... --tests tests/upgrade --tests-after-upgrade

The image is never written: the guest runs on a qcow2 overlay in a temporary folder.
The guest is driven over its serial console, which must give a root shell (the stand-in
distribution does; see vm/README.md for real images). The repository is served to the
guest at http://10.0.2.2:PORT/repo and the booted deployment's remote is pointed there.
External tests: every executable in --tests is copied into the guest and run as root; exit 0
passes, 77 skips, anything else fails. A header comment sets metadata:
  # atomic-factory: timeout=60, needs=upgrade
Exit status: 0 when every step passed, 1 when a step failed or the input is bad.")]
pub struct UpgradeTestArgs {
    /// The image to boot (qcow2 or raw); it is never modified
    pub image: PathBuf,
    /// The ostree repository to serve to the guest
    #[arg(long)]
    pub repo: PathBuf,
    /// The ref to upgrade to (its commit in --repo)
    #[arg(long = "ref", value_name = "REF")]
    pub ostree_ref: String,
    /// Upgrade to this commit (checksum or ref) instead of the ref's
    #[arg(long, value_name = "COMMIT")]
    pub to: Option<String>,
    /// The commit the image boots [default: manifest.json beside the image, else the first boot]
    #[arg(long, value_name = "COMMIT")]
    pub from: Option<String>,
    /// Deploy a target that does not descend from the booted commit
    #[arg(long)]
    pub allow_downgrade: bool,
    /// A folder of external tests (executables) to run in the guest after boot
    #[arg(long, value_name = "DIR")]
    pub tests: Option<PathBuf>,
    /// Run the external tests again after the upgrade
    #[arg(long, requires = "tests")]
    pub tests_after_upgrade: bool,
    /// Write a JUnit XML report here
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Seconds for each boot and each guest command
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
    /// Fail a step when the guest prints nothing for this many seconds while we wait
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub inactivity_timeout: u64,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 1024)]
    pub memory: u64,
    /// Guest CPUs
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Accelerator: auto probes KVM and falls back to TCG
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Console logs, screendumps and test outputs go here
    #[arg(long, value_name = "DIR", default_value = "upgrade-test-logs")]
    pub log_dir: PathBuf,
    /// The QEMU binary
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
}

impl UpgradeTestArgs {
    /// The [`UpgradeTestConfig`] these arguments ask for.
    pub fn to_config(self) -> UpgradeTestConfig {
        UpgradeTestConfig {
            image: self.image,
            repo: self.repo,
            ostree_ref: self.ostree_ref,
            to: self.to,
            from: self.from,
            allow_downgrade: self.allow_downgrade,
            tests_dir: self.tests,
            tests_after_upgrade: self.tests_after_upgrade,
            junit: self.junit,
            timeout: Duration::from_secs(self.timeout),
            inactivity: Duration::from_secs(self.inactivity_timeout),
            memory_mib: self.memory,
            cpus: self.cpus,
            accel: self.accel,
            qemu: self.qemu,
            log_dir: self.log_dir,
        }
    }
}

/// Runs `atomic-factory upgrade-test`; on a failed step, prints that step's console lines
/// and screendump and returns an error naming it.
pub fn upgrade_test(args: UpgradeTestArgs) -> anyhow::Result<()> {
    let report = super::upgrade_test::run(&args.to_config())?;
    if let Some(step) = report.first_failure() {
        eprintln!("\nlast console lines of the failed step:");
        for line in step.console.iter().rev().take(20).rev() {
            eprintln!("  | {line}");
        }
        if let Some(shot) = &step.screendump {
            eprintln!("screendump: {}", shot.display());
        }
        let why = match &step.outcome {
            super::upgrade_test::Outcome::Failed(why) => why.clone(),
            _ => String::new(),
        };
        anyhow::bail!("upgrade-test failed at step {why}");
    }
    eprintln!(
        "upgrade-test: {} upgraded to {} and rolled back in {:.1} s",
        report.from_commit.as_deref().unwrap_or("?"),
        report.to_commit,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

/// Runs `atomic-factory install` and prints the disk, the accelerator and the timings.
pub fn install(args: InstallArgs) -> anyhow::Result<()> {
    let outcome = install::run(&args.to_config()?)?;
    println!(
        "{} installed ({}, {:.1} s; our overhead: {:.0} ms set-up + {:.0} ms after poweroff)",
        outcome.disk.display(),
        outcome.accel.qemu_name(),
        outcome.elapsed.as_secs_f64(),
        outcome.setup.as_secs_f64() * 1000.0,
        outcome.teardown.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Runs `atomic-factory boot-test` (probing the accelerator first); prints each failed
/// image's console tail and returns an error when any image failed.
pub fn boot_test(args: BootTestArgs) -> anyhow::Result<()> {
    let accel = super::choose_accel_blocking(args.accel)?;
    let config = super::boot_test::BootTestConfig {
        images: args.images,
        expect: args.expect,
        timeout: std::time::Duration::from_secs(args.timeout),
        memory_mib: args.memory,
        cpus: args.cpus,
        accel,
        jobs: args.jobs,
        log_dir: args.log_dir,
        junit: args.junit,
    };
    let results = super::boot_test::run(&config)?;
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    for r in &failed {
        eprintln!(
            "\n{}\nlast console lines ({}):",
            r.describe(),
            r.console_log.display()
        );
        for line in &r.console_tail {
            eprintln!("  | {line}");
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} image(s) failed the boot test",
            failed.len(),
            results.len()
        );
    }
    eprintln!("boot-test: all {} image(s) passed", results.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_disk_size;

    #[test]
    fn disk_sizes() {
        assert_eq!(parse_disk_size("8G"), Ok(8 << 30));
        assert_eq!(parse_disk_size("512MiB"), Ok(512 << 20));
        assert!(
            parse_disk_size("3X")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_disk_size("10").unwrap_err().contains("at least 1M"));
    }
}
