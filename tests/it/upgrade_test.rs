//! Acceptance tests of `upgrade-test` (issue 13), under TCG, with the stand-in distribution
//! that `vm/prepare` builds: an image installed from commit A upgrades inside the guest to B
//! (one changed file, one new file, checked in the guest by an external test), reboots into
//! B, rolls back and reboots into A; and each failure of the matrix names its step.
//! The VM tests of this file run one at a time, and alone (`vm::exclusive`), and so do the
//! ones that may install image N-1 on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use atomic_factory::vm::install;
use atomic_factory::vm::upgrade_test::{self, Outcome, UpgradeReport, UpgradeTestConfig};

use crate::support::vm::{self, REF, kickstart, test_repo};
use crate::support::{benchmark_lock, capture, root, run};

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("upgrade-{}", std::process::id()))
}

/// The image N-1: the stand-in distribution at commit A, installed once per test run (by the
/// first test that needs it, which holds `vm::exclusive`).
fn image() -> &'static (PathBuf, String) {
    static IMAGE: OnceLock<(PathBuf, String)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = scratch().join("image");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ks = kickstart(&dir, "http://10.0.2.2/repo", "");
        let mut cfg = vm::install_config(&dir, ks);
        cfg.repo = Some(test_repo().to_path_buf());
        cfg.ostree_ref = Some(REF.into());
        cfg.accel = atomic_factory::vm::accel::AccelChoice::Tcg;
        install::run(&cfg).unwrap_or_else(|e| panic!("installing image N-1 failed: {e:#}"));
        let a = rev(test_repo(), REF);
        (cfg.output, a)
    })
}

fn rev(repo: &Path, r: &str) -> String {
    capture(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["rev-parse", r]),
    )
}

/// A copy of the test repository with a commit on top of A, made with the real `ostree
/// commit` from a checkout of A that `change` edits.
fn repo_with_next_commit(name: &str, change: impl FnOnce(&Path)) -> (PathBuf, String) {
    let (_, a) = image();
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let repo = dir.join("repo");
    run(Command::new("cp").arg("-a").arg(test_repo()).arg(&repo));
    let r = format!("--repo={}", repo.display());
    let tree = dir.join("tree");
    run(Command::new("ostree")
        .arg(&r)
        .arg("checkout")
        .arg(a)
        .arg(&tree));
    change(&tree);
    run(Command::new("ostree").arg(&r).args([
        "commit",
        "-b",
        REF,
        &format!("--parent={a}"),
        "--owner-uid=0",
        "--owner-gid=0",
        "-s",
        "next",
        &format!("--tree=dir={}", tree.display()),
    ]));
    run(Command::new("ostree").arg(&r).args(["summary", "-u"]));
    std::fs::remove_dir_all(&tree).unwrap();
    let b = rev(&repo, REF);
    (repo, b)
}

/// B: os-release changed, one new file.
fn repo_b() -> &'static (PathBuf, String) {
    static B: OnceLock<(PathBuf, String)> = OnceLock::new();
    B.get_or_init(|| {
        repo_with_next_commit("b", |tree| {
            let os = tree.join("usr/lib/os-release");
            let text = std::fs::read_to_string(&os).unwrap();
            let _ = std::fs::remove_file(&os);
            std::fs::write(&os, text.replace("StandinOS-1", "StandinOS-2")).unwrap();
            std::fs::create_dir_all(tree.join("usr/share/upgrade-check")).unwrap();
            std::fs::write(tree.join("usr/share/upgrade-check/new-file"), "new in B\n").unwrap();
        })
    })
}

fn write_test(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn config(name: &str, repo: &Path) -> UpgradeTestConfig {
    let (image, _) = image();
    let logs = scratch().join(name).join("logs");
    UpgradeTestConfig {
        image: image.clone(),
        repo: repo.to_path_buf(),
        ostree_ref: REF.into(),
        to: None,
        from: None,
        allow_downgrade: false,
        tests_dir: None,
        tests_after_upgrade: false,
        junit: Some(scratch().join(name).join("junit.xml")),
        timeout: Duration::from_secs(240),
        inactivity: Duration::from_secs(120),
        memory_mib: 1024,
        cpus: 1,
        accel: atomic_factory::vm::accel::AccelChoice::Tcg,
        qemu: "qemu-system-x86_64".into(),
        log_dir: logs,
    }
}

fn sha256(path: &Path) -> String {
    capture(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// No QEMU of ours left: none has the test's scratch folder or an upgrade-test overlay open.
fn assert_no_qemu_left() {
    let out = Command::new("pgrep")
        .args(["-af", "qemu-system"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("upgrade-test-") || l.contains("af-upg-"))
        .collect();
    assert!(ours.is_empty(), "QEMU left running: {ours:?}");
}

fn failed_step(report: &UpgradeReport) -> (String, String) {
    let step = report
        .first_failure()
        .unwrap_or_else(|| panic!("expected a failed step: {:#?}", report.steps));
    let Outcome::Failed(why) = &step.outcome else {
        unreachable!()
    };
    (step.name.clone(), why.clone())
}

fn validate_junit(path: &Path) {
    let schema = root().join("tests/fixtures/junit.xsd");
    run(Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(schema)
        .arg(path));
}

/// Acceptance: A boots, upgrades to B (changed and new file checked in the guest by an
/// external test), reboots into B, rolls back, reboots into A; JUnit validates; the image
/// file is unchanged and no QEMU is left.
#[test]
fn demo_upgrade_and_rollback() {
    let _vms = vm::exclusive();
    let (image, a) = image();
    let (repo, b) = repo_b();
    let before = sha256(image);
    let tests = scratch().join("happy-tests");
    write_test(
        &tests,
        "10-new-content",
        "#!/bin/sh\n# atomic-factory: timeout=60, needs=upgrade\n\
         grep -q PRETTY_NAME=StandinOS-2 /usr/lib/os-release || { echo 'os-release unchanged'; exit 1; }\n\
         test \"$(cat /usr/share/upgrade-check/new-file)\" = 'new in B' || { echo 'new file missing'; exit 1; }\n\
         echo content-of-B-checked\n",
    );
    write_test(
        &tests,
        "20-old-content",
        "#!/bin/sh\ngrep -q PRETTY_NAME=StandinOS-1 /usr/lib/os-release && test ! -e /usr/share/upgrade-check/new-file\n",
    );
    write_test(&tests, "30-skips", "#!/bin/sh\necho not here\nexit 77\n");
    let mut cfg = config("happy", repo);
    cfg.tests_dir = Some(tests);
    let report = upgrade_test::run(&cfg).expect("upgrade-test runs");
    assert!(
        report.passed(),
        "upgrade-test failed: {:?}",
        report.first_failure()
    );
    assert_eq!(report.from_commit.as_deref(), Some(a.as_str()));
    assert_eq!(&report.to_commit, b);
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "boot the image",
        "test 20-old-content (after boot)",
        "upgrade",
        "reboot into the upgrade",
        "test 10-new-content (after upgrade)",
        "rollback",
        "reboot into the rollback",
    ] {
        let step = report
            .steps
            .iter()
            .find(|s| s.name == want)
            .unwrap_or_else(|| panic!("step {want} missing in {names:?}"));
        assert_eq!(step.outcome, Outcome::Passed, "{want}");
    }
    let skipped = report
        .steps
        .iter()
        .find(|s| s.name.starts_with("test 30-skips"))
        .unwrap();
    assert!(matches!(skipped.outcome, Outcome::Skipped(_)));
    // The guest's own words: each boot's console shows the commit it booted.
    let logs = &cfg.log_dir;
    let boot2 = std::fs::read_to_string(logs.join("boot-2.console.log")).unwrap();
    assert!(boot2.contains(&format!("* standin {b}.0")), "{boot2}");
    assert!(boot2.contains("content-of-B-checked"));
    let boot3 = std::fs::read_to_string(logs.join("boot-3.console.log")).unwrap();
    assert!(boot3.contains(&format!("* standin {a}.")), "{boot3}");
    assert!(boot3.contains("os: StandinOS-1"));
    let junit = cfg.junit.as_ref().unwrap();
    validate_junit(junit);
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("name=\"reboot into the rollback\""));
    assert!(xml.contains("<skipped"));
    assert_eq!(sha256(image), before, "the image file was modified");
    assert_no_qemu_left();
}

/// B's kernel panics: the reboot step fails and says the new deployment did not come up.
#[test]
fn kernel_panic_in_the_new_deployment_fails_the_reboot_step() {
    let _vms = vm::exclusive();
    let (repo, _) = repo_with_next_commit("panic", |tree| {
        let modules = tree.join("usr/lib/modules");
        for kver in std::fs::read_dir(&modules).unwrap() {
            let initramfs = kver.unwrap().path().join("initramfs.img");
            let _ = std::fs::remove_file(&initramfs);
            // Not a cpio: the kernel finds no /init and no root, and panics.
            std::fs::write(&initramfs, b"this is not an initramfs\n").unwrap();
        }
    });
    let cfg = config("panic", &repo);
    let report = upgrade_test::run(&cfg).expect("upgrade-test runs");
    let (step, why) = failed_step(&report);
    assert_eq!(step, "reboot into the upgrade", "{why}");
    assert!(why.contains("did not come up"), "{why}");
    assert!(why.contains("kernel panic"), "{why}");
    validate_junit(cfg.junit.as_ref().unwrap());
    assert_no_qemu_left();
}

/// An external test that exits 1 fails its step, with its output in the report.
#[test]
fn failing_external_test_fails_its_step() {
    let _vms = vm::exclusive();
    let (repo, _) = repo_b();
    let tests = scratch().join("failing-tests");
    write_test(
        &tests,
        "check-motd",
        "#!/bin/sh\necho 'motd is wrong'\nexit 1\n",
    );
    let mut cfg = config("failing", repo);
    cfg.tests_dir = Some(tests);
    let report = upgrade_test::run(&cfg).expect("upgrade-test runs");
    let (step, why) = failed_step(&report);
    assert_eq!(step, "test check-motd (after boot)");
    assert!(
        why.contains("exit 1") && why.contains("motd is wrong"),
        "{why}"
    );
    let upgrade = report.steps.iter().find(|s| s.name == "upgrade").unwrap();
    assert!(matches!(upgrade.outcome, Outcome::Skipped(_)));
    assert_no_qemu_left();
}

/// A guest that stops answering: the inactivity timeout fails the step, with a screendump.
#[test]
fn guest_that_stops_answering_fails_with_a_screendump() {
    let _vms = vm::exclusive();
    let (repo, _) = repo_b();
    let tests = scratch().join("hang-tests");
    // Stops the shell that runs the tests: nothing answers any more.
    write_test(&tests, "freeze", "#!/bin/sh\nkill -STOP $PPID\n");
    let mut cfg = config("hang", repo);
    cfg.tests_dir = Some(tests);
    cfg.inactivity = Duration::from_secs(15);
    let report = upgrade_test::run(&cfg).expect("upgrade-test runs");
    let (step, why) = failed_step(&report);
    assert_eq!(step, "test freeze (after boot)");
    assert!(why.contains("stopped answering"), "{why}");
    let failed = report.first_failure().unwrap();
    let shot = failed.screendump.as_ref().expect("a screendump");
    assert!(std::fs::metadata(shot).unwrap().len() > 0);
    assert_no_qemu_left();
}

/// B is not in the served repository: refused before boot, naming the step and the commit.
#[test]
fn commit_missing_from_the_served_repo_is_refused_before_boot() {
    let _vms = vm::exclusive();
    let (repo, _) = repo_b();
    let missing = "0123456789abcdef".repeat(4);
    let mut cfg = config("missing", repo);
    cfg.to = Some(missing.clone());
    let err = upgrade_test::run(&cfg).expect_err("a missing commit must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&missing) && msg.contains("step upgrade") && msg.contains("not in the served"),
        "{msg}"
    );
    assert!(
        !cfg.log_dir.join("boot-1.console.log").exists(),
        "it booted"
    );

    // The ref's commit object gone (a half-synced repository): also refused before boot.
    let partial = scratch().join("missing/partial-repo");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(repo).arg(&partial));
    let b = rev(&partial, REF);
    std::fs::remove_file(partial.join(format!("objects/{}/{}.commit", &b[..2], &b[2..]))).unwrap();
    let cfg = config("missing", &partial);
    let msg = format!("{:#}", upgrade_test::run(&cfg).unwrap_err());
    assert!(msg.contains("step upgrade") && msg.contains(&b), "{msg}");
}

/// `--to` a commit that does not descend from the booted one: refused before boot (the
/// booted commit from --from or the image's manifest), unless --allow-downgrade.
#[test]
fn target_that_does_not_descend_is_refused_before_boot() {
    let _vms = vm::exclusive();
    let (_, a) = image();
    let (repo, b) = repo_b();
    let mut cfg = config("downgrade", repo);
    cfg.from = Some(b.clone());
    cfg.to = Some(a.clone());
    let msg = format!("{:#}", upgrade_test::run(&cfg).unwrap_err());
    assert!(
        msg.contains("does not descend") && msg.contains("--allow-downgrade"),
        "{msg}"
    );
    assert!(
        !cfg.log_dir.join("boot-1.console.log").exists(),
        "it booted"
    );

    // The same from the manifest.json that postprocess writes beside an image.
    let dir = scratch().join("downgrade/published");
    std::fs::create_dir_all(&dir).unwrap();
    let published = dir.join("img.qcow2");
    std::fs::copy(&image().0, &published).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        format!("{{\"name\": \"img.qcow2\", \"ostree_commit\": \"{b}\"}}"),
    )
    .unwrap();
    let mut cfg = config("downgrade", repo);
    cfg.image = published;
    cfg.to = Some(a.clone());
    let msg = format!("{:#}", upgrade_test::run(&cfg).unwrap_err());
    assert!(msg.contains("does not descend"), "{msg}");
}

/// SIGKILL of our process mid-run leaves no QEMU behind, and the image is unchanged.
#[test]
fn sigkill_leaves_nothing_running() {
    let _vms = vm::exclusive();
    let (image, _) = image();
    let (repo, _) = repo_b();
    let before = sha256(image);
    let logs = scratch().join("sigkill/logs");
    let _ = std::fs::remove_dir_all(&logs);
    let mut child = Command::new(env!("CARGO_BIN_EXE_atomic-factory"))
        .arg("upgrade-test")
        .arg(image)
        .arg("--repo")
        .arg(repo)
        .args(["--ref", REF, "--accel", "tcg", "--log-dir"])
        .arg(&logs)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the guest is up and talking, then kill.
    let console = logs.join("boot-1.console.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while std::fs::read_to_string(&console)
        .map(|t| !t.contains("STANDIN-OSTREE-BOOT-OK"))
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never booted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_no_qemu_left();
    assert_eq!(sha256(image), before);
}

/// Benchmark (BENCHMARKS.md, section "upgrade-test"):
///   cargo test --release --test it upgrade_cycle_benchmark -- --ignored --nocapture
/// The whole upgrade-and-rollback cycle (three boots) three times, with our overhead outside
/// the guest (QEMU start to first console byte) and the guest command round trip.
#[test]
#[ignore = "benchmark: cargo test --release --test it upgrade_cycle_benchmark -- --ignored --nocapture"]
fn upgrade_cycle_benchmark() {
    let _bench = benchmark_lock();
    let _vms = vm::exclusive();
    let (repo, _) = repo_b();
    let mut cycles = Vec::new();
    let mut first_output = Vec::new();
    let mut round_trips = Vec::new();
    let mut noop = Vec::new();
    for round in 0..3 {
        let cfg = config(&format!("bench-{round}"), repo);
        let report = upgrade_test::run(&cfg).expect("upgrade-test runs");
        assert!(report.passed(), "{:?}", report.first_failure());
        eprintln!(
            "  round {round}: cycle {:.1} s, first output {:?}, {} guest commands",
            report.elapsed.as_secs_f64(),
            report.first_output,
            report.round_trips.len()
        );
        cycles.push(report.elapsed.as_secs_f64());
        first_output.extend(report.first_output.iter().map(|d| d.as_secs_f64() * 1000.0));
        round_trips.extend(report.round_trips.iter().map(|d| d.as_secs_f64() * 1000.0));
        noop.extend(
            report
                .noop_round_trips
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0),
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    // The round trip of `ostree admin status`: the cheapest command each cycle runs.
    let (min_rt, med_rt) = {
        let mut v = round_trips.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[0], median(&mut round_trips))
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "upgrade-test cycle (3 boots, TCG): median {:.1} s of {cycles:?}\n\
         QEMU start to first console byte: median {:.0} ms\n\
         empty command round trip over the console: median {:.1} ms of {} ({noop:.1?})\n\
         guest command round trip (marker to marker, includes the command): min {min_rt:.0} ms, median {med_rt:.0} ms\n\
         load average before: {load}",
        median(&mut cycles),
        median(&mut first_output),
        median(&mut noop.clone()),
        noop.len()
    );
}

/// `--tests-after-upgrade`: a test without `needs=upgrade` runs after boot and again after
/// the upgrade, and sees the commit booted each time.
#[test]
fn tests_run_again_after_the_upgrade_when_asked() {
    let _vms = vm::exclusive();
    let (repo, _) = repo_b();
    let tests = scratch().join("again-tests");
    write_test(
        &tests,
        "os-name",
        "#!/bin/sh\ntest -e /run/ostree-booted || exit 1\n. /usr/lib/os-release && echo \"running on $PRETTY_NAME\"\n",
    );
    let mut cfg = config("again", repo);
    cfg.tests_dir = Some(tests);
    cfg.tests_after_upgrade = true;
    let report = upgrade_test::run(&cfg).expect("upgrade-test runs");
    assert!(report.passed(), "{:?}", report.first_failure());
    for when in ["after boot", "after upgrade"] {
        let name = format!("test os-name ({when})");
        let step = report.steps.iter().find(|s| s.name == name);
        assert_eq!(step.map(|s| &s.outcome), Some(&Outcome::Passed), "{name}");
    }
    let boot = std::fs::read_to_string(cfg.log_dir.join("test-os-name-boot.log")).unwrap();
    let upgrade = std::fs::read_to_string(cfg.log_dir.join("test-os-name-upgrade.log")).unwrap();
    assert!(boot.contains("running on StandinOS-1"), "{boot}");
    assert!(upgrade.contains("running on StandinOS-2"), "{upgrade}");
}
