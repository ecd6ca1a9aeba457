//! `atomic-factory build` end to end on the demo image: stand-in distribution composed,
//! installed by the stand-in installer under TCG, post-processed and boot-tested.
//! Each test works in its own copy of the demo definition, so they can run in parallel.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_atomic-factory");

fn project() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when vm/prepare has not built the stand-in fixtures.
fn require_fixtures() {
    for f in [
        "vm/out/standin/vmlinuz",
        "vm/out/standin/installer.img",
        "vm/out/distro/repo/repodata/repomd.xml",
    ] {
        assert!(project().join(f).exists(), "{f} is missing: run vm/prepare");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A private copy of the demo in the project's layout: kickstarts/demo, templates, vm/out.
fn demo_copy(dir: &Path) -> PathBuf {
    require_fixtures();
    copy_dir(
        &project().join("kickstarts/demo"),
        &dir.join("kickstarts/demo"),
    );
    copy_dir(&project().join("templates"), &dir.join("templates"));
    std::fs::create_dir_all(dir.join("vm")).unwrap();
    std::os::unix::fs::symlink(project().join("vm/out"), dir.join("vm/out")).unwrap();
    dir.join("kickstarts/demo/image.yaml")
}

struct Run {
    ok: bool,
    stderr: String,
    /// (event, stage) pairs from the --json stream.
    events: Vec<(String, String)>,
    took: Duration,
}

impl Run {
    fn stages(&self, event: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn parse_events(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON event: {l:?}: {e}"))
        })
        .map(|v| {
            (
                v["event"].as_str().unwrap_or_default().to_string(),
                v["stage"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn build(definition: &Path, out: &Path, extra: &[&str]) -> Run {
    let started = Instant::now();
    let output = Command::new(BIN)
        .arg("build")
        .arg(definition)
        .arg("-o")
        .arg(out)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    Run {
        ok: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        events: parse_events(&String::from_utf8_lossy(&output.stdout)),
        took: started.elapsed(),
    }
}

fn qemu_processes_using(dir: &Path) -> Vec<String> {
    let out = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("qemu-system") && l.contains(&*dir.to_string_lossy()))
        .map(str::to_string)
        .collect()
}

const ALL: [&str; 6] = [
    "compose",
    "summary",
    "kickstart",
    "install",
    "postprocess",
    "boot-test",
];

#[test]
fn demo_builds_boots_then_skips_then_reruns_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let definition = demo_copy(dir.path());
    let out = dir.path().join("out");

    let first = build(&definition, &out, &[]);
    assert!(first.ok, "demo build failed:\n{}", first.stderr);
    assert_eq!(first.stages("stage-finished"), ALL, "{:?}", first.events);
    let image = out.join("demo.qcow2");
    assert!(image.exists(), "no image at {}", image.display());
    // The image passes an independent boot-test run too.
    let check = Command::new(BIN)
        .arg("boot-test")
        .arg(&image)
        .arg("--log-dir")
        .arg(dir.path().join("bt"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "boot-test of the built image failed: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let qemu_img = Command::new("qemu-img")
        .arg("check")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        qemu_img.status.success(),
        "qemu-img check: {}",
        String::from_utf8_lossy(&qemu_img.stdout)
    );
    // Every stage's logs are under logs/, the installer's console included.
    let install_logs = out.join("logs/install/vm");
    assert!(
        std::fs::read_dir(&install_logs)
            .map(|d| d.count() > 0)
            .unwrap_or(false),
        "no installer logs under {}",
        install_logs.display()
    );
    eprintln!("first build took {:.1} s", first.took.as_secs_f64());

    let second = build(&definition, &out, &[]);
    assert!(second.ok, "{}", second.stderr);
    assert_eq!(second.stages("stage-skipped"), ALL, "{:?}", second.events);
    assert!(second.stages("stage-started").is_empty());
    assert!(
        second.took < Duration::from_secs(5),
        "no-change build took {:?}",
        second.took
    );

    // A kickstart change reruns install and what follows, not compose.
    let template = dir.path().join("kickstarts/demo/ks.cfg.j2");
    let mut text = std::fs::read_to_string(&template).unwrap();
    text.push_str("\n# a change that only the kickstart sees\n");
    std::fs::write(&template, text).unwrap();
    let third = build(&definition, &out, &[]);
    assert!(third.ok, "{}", third.stderr);
    assert_eq!(
        third.stages("stage-skipped"),
        ["compose", "summary"],
        "{:?}",
        third.events
    );
    assert_eq!(
        third.stages("stage-finished"),
        ["kickstart", "install", "postprocess", "boot-test"]
    );
    assert!(qemu_processes_using(dir.path()).is_empty());
}

#[test]
fn killed_during_install_resumes_without_redoing_compose() {
    let dir = tempfile::tempdir().unwrap();
    let definition = demo_copy(dir.path());
    let out = dir.path().join("out");

    let mut child = Command::new(BIN)
        .arg("build")
        .arg(&definition)
        .arg("-o")
        .arg(&out)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut saw_install = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("\"stage-started\"") && line.contains("\"install\"") {
            saw_install = true;
            break;
        }
    }
    assert!(saw_install, "the build never reached install");
    // Let QEMU get going, then kill the build as a user's Ctrl-\ or a CI timeout would.
    std::thread::sleep(Duration::from_secs(4));
    child.kill().unwrap();
    child.wait().unwrap();
    // QEMU must not outlive the build (it gets SIGKILL with its parent).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !qemu_processes_using(dir.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        qemu_processes_using(dir.path()).is_empty(),
        "QEMU outlived the killed build"
    );
    assert!(
        !out.join("installed.qcow2").exists(),
        "a half-written installed disk was left in place"
    );

    let resumed = build(&definition, &out, &[]);
    assert!(resumed.ok, "{}", resumed.stderr);
    assert_eq!(
        resumed.stages("stage-skipped"),
        ["compose", "summary", "kickstart"],
        "{:?}",
        resumed.events
    );
    assert_eq!(
        resumed.stages("stage-finished"),
        ["install", "postprocess", "boot-test"]
    );
    assert!(out.join("demo.qcow2").exists());
}

#[test]
fn bad_stage_names_and_definitions_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["build", "--from", "instal"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("instal") && stderr.contains("install"),
        "{stderr}"
    );

    let bad = dir.path().join("image.yaml");
    std::fs::write(
        &bad,
        "name: x\nostree: { osname: x }\nvm: { memroy: 512 }\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("build").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("image.yaml:3") && stderr.contains("memroy"),
        "{stderr}"
    );
}
