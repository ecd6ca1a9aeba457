//! Acceptance tests for `kickstart render` and `kickstart lint`, checked against
//! pykickstart's `ksvalidator` (installed into `.venv` by `vm/prepare`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use atomic_factory::kickstart::{self, PipelineVars, lint::Checker};
use atomic_factory::pipeline::definition::ImageDefinition;

const URL: &str = "http://10.0.2.2:8000/repo";
const REF: &str = "standin/x86_64/demo";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ksvalidator vm/prepare installs; a missing one fails the test (never a skip).
fn ksvalidator() -> PathBuf {
    let p = root().join(".venv/bin/ksvalidator");
    assert!(
        p.is_file(),
        "{} is missing: run vm/prepare (it installs pykickstart into .venv)",
        p.display()
    );
    p
}

/// Run the real ksvalidator; `DEVEL` runs it without `-v` (its default), because
/// `-v DEVEL` fails for every file with pykickstart 3.78 (see src/kickstart/ksvalidator.rs).
fn run_ksvalidator(file: &Path, version: &str) -> Output {
    Command::new(ksvalidator())
        .args(kickstart::ksvalidator::version_args(version))
        .arg(file)
        .output()
        .expect("running ksvalidator")
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomic-factory"));
    c.env("ATOMIC_FACTORY_KSVALIDATOR", ksvalidator());
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pipeline() -> PipelineVars {
    PipelineVars {
        ostree_url: Some(URL.into()),
        ostree_ref: Some(REF.into()),
        server_address: Some("10.0.2.2:8000".into()),
    }
}

/// Every `kickstarts/*/image.yaml`.
fn shipped_images() -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(root().join("kickstarts"))
        .expect("reading kickstarts/")
        .map(|e| e.unwrap().path().join("image.yaml"))
        .filter(|p| p.is_file())
        .collect();
    images.sort();
    images
}

#[test]
fn every_shipped_kickstart_renders_lints_clean_and_passes_ksvalidator() {
    let images = shipped_images();
    let names: Vec<_> = images
        .iter()
        .map(|p| {
            p.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert!(
        names.contains(&"demo".to_string()) && names.contains(&"fedora-atomic-cloud".to_string()),
        "{names:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    // Each image as shipped, and with `signing:` (the remote then verifies with the key).
    let variants = images
        .iter()
        .flat_map(|image| [(image, false), (image, true)]);
    for (image, signed) in variants {
        let mut def = ImageDefinition::load(image).unwrap();
        if signed {
            def.signing = Some(atomic_factory::pipeline::definition::SigningSection {
                key: "builder@example.org".into(),
                gpg_homedir: None,
                key_file: None,
                passphrase_file: None,
                keypath: None,
            });
        }
        let ks = kickstart::render(&def.render_input(), &pipeline(), &[]).unwrap();
        let file = dir.path().join(format!("{}-{signed}.ks", def.name));
        std::fs::write(&file, &ks).unwrap();
        if signed {
            let keypath = format!(
                "--set=gpgkeypath=/etc/pki/ostree/{}.gpg ",
                def.ostree.remote_name()
            );
            assert!(
                ks.lines()
                    .any(|l| l.starts_with("ostree remote add --set=gpg-verify=true")
                        && l.contains(&keypath)),
                "{} with signing: no gpg-verified remote using {keypath}:\n{ks}",
                def.name
            );
        }

        // The payload points at the install stage's server and the composed ref.
        let setups: Vec<_> = ks
            .lines()
            .filter(|l| l.starts_with("ostreesetup"))
            .collect();
        assert_eq!(setups.len(), 1, "{}:\n{ks}", def.name);
        assert!(
            setups[0].contains(&format!("--url={URL}"))
                && setups[0].contains(&format!("--ref={REF}")),
            "{}",
            setups[0]
        );
        assert!(setups[0].contains(&format!("--osname={}", def.ostree.osname)));

        for version in ["F41", "DEVEL"] {
            let report = kickstart::lint(&ks, &file, version).unwrap();
            assert!(
                report.findings.is_empty(),
                "{} ({version}): {:#?}",
                def.name,
                report.findings
            );
            let out = run_ksvalidator(&file, version);
            assert!(
                out.status.success() && !text(&out).contains("problem occurred"),
                "ksvalidator {version} rejects {}:\n{}\n{ks}",
                def.name,
                text(&out)
            );
            // And the CLI, which runs both, exits 0.
            let out = bin()
                .args(["kickstart", "lint", "--version", version])
                .arg(&file)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out));
            assert!(text(&out).contains("ksvalidator"), "{}", text(&out));
        }
    }
}

/// The stand-in installer's parser (vm/standin) takes exactly these lines and refuses any
/// line with `$` or a backtick, section bodies included.
#[test]
fn demo_kickstart_fits_the_standin_installer() {
    let def = ImageDefinition::load(&root().join("kickstarts/demo/image.yaml")).unwrap();
    let ks = kickstart::render(&def.render_input(), &pipeline(), &[]).unwrap();
    for want in [
        "text",
        "zerombr",
        "clearpart --all --initlabel",
        "part /boot --fstype=ext4 --size=256",
        "part / --fstype=ext4 --grow",
        "bootloader --append=\"console=ttyS0\"",
        &format!("ostreesetup --osname=standin --remote=standin --url={URL} --ref={REF} --nogpg"),
        "poweroff",
    ] {
        assert!(
            ks.lines().any(|l| l == want),
            "missing line {want:?} in:\n{ks}"
        );
    }
    for (i, line) in ks.lines().enumerate() {
        assert!(
            !line.contains('$') && !line.contains('`'),
            "line {} has $ or a backtick: {line}",
            i + 1
        );
    }
    assert!(!ks.contains("PRETTY_NAME"));
}

const GOOD: &str = "\
text
zerombr
clearpart --all --initlabel
part / --fstype=ext4 --grow
bootloader --append=\"console=ttyS0\"
ostreesetup --osname=standin --remote=standin --url=http://10.0.2.2:8000/repo --ref=standin/x86_64/demo --nogpg
poweroff
%post
echo done
%end
";

struct Case {
    what: &'static str,
    ks: String,
    /// Text our finding must contain, and the line it must point at (0: whole file).
    message: &'static str,
    line: usize,
    /// Whether pykickstart itself rejects it (our rule must agree with the oracle there).
    ksvalidator_rejects: bool,
}

fn cases() -> Vec<Case> {
    let setup = "ostreesetup --osname=standin --remote=standin --url=http://10.0.2.2:8000/repo --ref=standin/x86_64/demo --nogpg";
    vec![
        Case {
            what: "no ostreesetup",
            ks: GOOD.replace(setup, ""),
            message: "no `ostreesetup` command",
            line: 0,
            ksvalidator_rejects: false,
        },
        Case {
            what: "two ostreesetup",
            ks: GOOD.replace(setup, &format!("{setup}\n{setup}")),
            message: "a second `ostreesetup` (the first is at",
            line: 7,
            ksvalidator_rejects: false,
        },
        Case {
            what: "ostreesetup without --ref",
            ks: GOOD.replace(" --ref=standin/x86_64/demo", ""),
            message: "`ostreesetup` lacks `--ref=...`",
            line: 6,
            ksvalidator_rejects: true,
        },
        Case {
            what: "ftp URL",
            ks: GOOD.replace("--url=http://", "--url=ftp://"),
            message: "the URL must be http://, https:// or file://",
            line: 6,
            ksvalidator_rejects: true,
        },
        Case {
            what: "reboot as last action",
            ks: GOOD.replace("poweroff", "reboot"),
            message: "`reboot` as the last action",
            line: 7,
            ksvalidator_rejects: false,
        },
        Case {
            what: "missing %end",
            ks: GOOD.replace("%end\n", ""),
            message: "section `%post` has no `%end`",
            line: 8,
            ksvalidator_rejects: true,
        },
        Case {
            what: "missing %include file",
            ks: GOOD.replace("zerombr\n", "zerombr\n%include storage-layout.ks\n"),
            message: "`%include storage-layout.ks`: file not found",
            line: 3,
            // Without -i ksvalidator does not follow includes.
            ksvalidator_rejects: false,
        },
        Case {
            what: "unknown command",
            ks: GOOD.replace("zerombr", "zerombrr"),
            message: "unknown command `zerombrr` for kickstart syntax F41; did you mean `zerombr`?",
            line: 2,
            ksvalidator_rejects: true,
        },
        Case {
            what: "command removed in F41",
            ks: GOOD.replace("text\n", "text\nauth --useshadow --passalgo=sha512\n"),
            message: "`auth` has been removed in F41",
            line: 2,
            ksvalidator_rejects: true,
        },
    ]
}

#[test]
fn lint_catches_each_mistake_where_the_oracle_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ks");
    std::fs::write(&good, GOOD).unwrap();
    assert!(
        kickstart::lint(GOOD, &good, "F41")
            .unwrap()
            .findings
            .is_empty()
    );
    assert!(run_ksvalidator(&good, "F41").status.success());

    for case in cases() {
        let file = dir
            .path()
            .join(format!("{}.ks", case.what.replace(' ', "-")));
        std::fs::write(&file, &case.ks).unwrap();
        let report = kickstart::lint(&case.ks, &file, "F41").unwrap();
        let hit = report
            .errors()
            .find(|f| f.message.contains(case.message))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no error {:?} in {:#?}",
                    case.what, case.message, report.findings
                )
            });
        assert_eq!(hit.origin.line, case.line, "{}: {hit}", case.what);
        assert_eq!(&*hit.origin.file, file.as_path(), "{}", case.what);

        let oracle = run_ksvalidator(&file, "F41");
        assert_eq!(
            !oracle.status.success(),
            case.ksvalidator_rejects,
            "{}: ksvalidator says {}",
            case.what,
            text(&oracle)
        );

        // The CLI prints file:line and fails, with ksvalidator's findings merged in.
        let out = bin()
            .args(["kickstart", "lint", "--version", "F41"])
            .arg(&file)
            .output()
            .unwrap();
        let shown = text(&out);
        assert!(!out.status.success(), "{}: {shown}", case.what);
        let prefix = if case.line == 0 {
            format!("{}: error: ", file.display())
        } else {
            format!("{}:{}: error: ", file.display(), case.line)
        };
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(case.message)),
            "{}: {shown}",
            case.what
        );
        if case.ksvalidator_rejects {
            assert!(
                shown.contains("error (ksvalidator)"),
                "{}: {shown}",
                case.what
            );
            assert!(
                report.findings.iter().all(|f| f.checker == Checker::Lint),
                "lint() alone never runs ksvalidator"
            );
        }
    }
}

#[test]
fn ksvalidator_findings_point_into_included_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("part.ks"), "zerombr\nbogus-command --x\n").unwrap();
    let main = dir.path().join("main.ks");
    std::fs::write(&main, GOOD.replace("zerombr\n", "%include part.ks\n")).unwrap();
    let out = bin()
        .args(["kickstart", "lint", "--version", "F41"])
        .arg(&main)
        .output()
        .unwrap();
    let shown = text(&out);
    let part = dir.path().join("part.ks");
    assert!(
        shown.contains(&format!(
            "{}:2: error (ksvalidator): Unknown command: bogus-command",
            part.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "{}:2: error: unknown command `bogus-command`",
            part.display()
        )),
        "{shown}"
    );
}

#[test]
fn plaintext_rootpw_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw.ks");
    std::fs::write(&file, GOOD.replace("text\n", "text\nrootpw hunter2\n")).unwrap();
    let out = bin()
        .args(["kickstart", "lint", "--version", "F41"])
        .arg(&file)
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!(
            "{}:2: warning: `rootpw` with a plaintext password",
            file.display()
        )),
        "{shown}"
    );
}

/// A scratch project: `templates/` with the shipped partials and one image.
fn scratch_project(template: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("templates");
    std::fs::create_dir(&tdir).unwrap();
    for e in std::fs::read_dir(root().join("templates")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tdir.join(e.file_name())).unwrap();
    }
    let idir = dir.path().join("kickstarts/x");
    std::fs::create_dir_all(&idir).unwrap();
    std::fs::write(
        idir.join("image.yaml"),
        "name: x\nostree: { osname: standin }\nkickstart: { vars: { lang: en_US.UTF-8 } }\n",
    )
    .unwrap();
    std::fs::write(idir.join("ks.cfg.j2"), template).unwrap();
    let image = idir.join("image.yaml");
    (dir, image)
}

fn render_err(image: &Path) -> String {
    let def = ImageDefinition::load(image).unwrap();
    format!(
        "{:#}",
        kickstart::render(&def.render_input(), &pipeline(), &[]).unwrap_err()
    )
}

#[test]
fn undefined_variable_names_file_line_and_variable() {
    let (_d, image) =
        scratch_project("text\nlang {{ lang }}\n\nnetwork --hostname={{ hostnme | ks_quote }}\n");
    let err = render_err(&image);
    let tmpl = image.with_file_name("ks.cfg.j2");
    assert!(
        err.contains(&format!(
            "{}:4: undefined variable `hostnme`",
            tmpl.display()
        )),
        "{err}"
    );

    // Inside a partial: the partial's file and line, and the dotted name.
    let (_d, image) = scratch_project(
        "{% import \"ostreesetup.ks.j2\" as payload %}\ntext\n{{ payload.setup(ostree) }}\n",
    );
    let def = ImageDefinition::load(&image).unwrap();
    let no_url = PipelineVars {
        ostree_url: None,
        ..pipeline()
    };
    let err = format!(
        "{:#}",
        kickstart::render(&def.render_input(), &no_url, &[]).unwrap_err()
    );
    assert!(
        err.contains("templates/ostreesetup.ks.j2:9: undefined variable `ostree.url`"),
        "{err}"
    );
    assert!(err.contains("--set ostree.url=VALUE"), "{err}");

    // The CLI fails the same way and writes nothing.
    let out_file = image.with_file_name("out.ks");
    let out = bin()
        .args(["kickstart", "render"])
        .arg(&image)
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("ostreesetup.ks.j2:9: undefined variable `ostree.url`"),
        "{}",
        text(&out)
    );
    assert!(!out_file.exists());
}

#[test]
fn template_syntax_error_names_file_and_line() {
    let (_d, image) = scratch_project("text\nlang {{ lang }}\n{% if lang %}\npoweroff\n");
    let err = render_err(&image);
    let tmpl = image.with_file_name("ks.cfg.j2");
    assert!(
        err.contains(&format!("{}:4: template syntax error", tmpl.display())),
        "{err}"
    );
    assert!(err.contains("unexpected end of input"), "{err}");

    let (_d, image) = scratch_project("text\n{{ lang | }}\n");
    let err = render_err(&image);
    assert!(err.contains("ks.cfg.j2:2: template syntax error"), "{err}");

    let (_d, image) = scratch_project("text\n{% include \"nowhere.ks.j2\" %}\n");
    let err = render_err(&image);
    assert!(
        err.contains("ks.cfg.j2:2:") && err.contains("nowhere.ks.j2"),
        "{err}"
    );
}

#[test]
fn rendering_twice_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    for image in shipped_images() {
        let def = ImageDefinition::load(&image).unwrap();
        let a = kickstart::render(&def.render_input(), &pipeline(), &[]).unwrap();
        let b = kickstart::render(&def.render_input(), &pipeline(), &[]).unwrap();
        assert_eq!(a, b);
        // Two processes, through the CLI and -o.
        let mut outs = Vec::new();
        for i in 0..2 {
            let out = dir.path().join(format!("{}-{i}.ks", def.name));
            let run = bin()
                .args(["kickstart", "render"])
                .arg(&image)
                .args([
                    "--set",
                    &format!("ostree.url={URL}"),
                    "--set",
                    &format!("ostree.ref={REF}"),
                ])
                .arg("-o")
                .arg(&out)
                .output()
                .unwrap();
            assert!(run.status.success(), "{}", text(&run));
            outs.push(std::fs::read(&out).unwrap());
        }
        assert_eq!(outs[0], outs[1], "{}", def.name);
        assert_eq!(
            outs[0],
            a.as_bytes(),
            "{}: CLI and library differ",
            def.name
        );
    }
}

#[test]
fn set_overrides_win_and_flatten_inlines_includes() {
    let (_d, image) = scratch_project(
        "text\nlang {{ lang }}\n%include extra.ks\nbootloader --append=\"console=ttyS0\"\n\
         ostreesetup --osname={{ ostree.osname }} --url={{ ostree.url }} --ref={{ ostree.ref }} --nogpg\npoweroff\n",
    );
    std::fs::write(
        image.with_file_name("extra.ks"),
        "zerombr\nclearpart --all --initlabel\n",
    )
    .unwrap();
    let out = bin()
        .args(["kickstart", "render", "--flatten"])
        .arg(&image)
        .args([
            "--set",
            "lang=de_DE.UTF-8",
            "--set",
            &format!("ostree.url={URL}"),
            "--set",
            "ostree.ref=a/b",
        ])
        .output()
        .unwrap();
    let ks = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        ks.contains("lang de_DE.UTF-8\nzerombr\nclearpart --all --initlabel\nbootloader"),
        "{ks}"
    );
    assert!(!ks.contains("%include"));
    let flat = image.with_file_name("flat.ks");
    std::fs::write(&flat, &ks).unwrap();
    assert!(run_ksvalidator(&flat, "F41").status.success());

    // A missing include makes --flatten fail, naming the include.
    std::fs::remove_file(image.with_file_name("extra.ks")).unwrap();
    let out = bin()
        .args(["kickstart", "render", "--flatten"])
        .arg(&image)
        .args([
            "--set",
            &format!("ostree.url={URL}"),
            "--set",
            "ostree.ref=a/b",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("ks.cfg.j2:3: `%include extra.ks`: file not found"),
        "{}",
        text(&out)
    );
}

#[test]
fn failed_render_keeps_the_previous_output() {
    let (_d, image) = scratch_project("text\n{{ missing }}\n");
    let out_file = image.with_file_name("ks.cfg");
    std::fs::write(&out_file, "previous\n").unwrap();
    let run = bin()
        .args(["kickstart", "render"])
        .arg(&image)
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "previous\n");
    let leftovers: Vec<_> = std::fs::read_dir(image.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".atomic-factory"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn render_takes_the_ref_from_the_treefile() {
    let image = root().join("kickstarts/fedora-atomic-cloud/image.yaml");
    let out = bin()
        .args(["kickstart", "render"])
        .arg(&image)
        .args(["--set", &format!("ostree.url={URL}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ks = String::from_utf8_lossy(&out.stdout);
    assert!(
        ks.contains("--ref=fedora/41/x86_64/atomic-host --nogpg"),
        "{ks}"
    );
    // Without a URL the error says how to give one.
    let out = bin()
        .args(["kickstart", "render"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--set ostree.url=VALUE"),
        "{}",
        text(&out)
    );
}

/// Speed of our lint against ksvalidator on the same rendered kickstarts, each run as a
/// process (what a user or the pipeline pays). Run with:
///   cargo test --release --test it bench_lint_vs_ksvalidator -- --ignored --nocapture
#[test]
#[ignore]
fn bench_lint_vs_ksvalidator() {
    let _bench = crate::support::benchmark_lock();
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for image in shipped_images() {
        let def = ImageDefinition::load(&image).unwrap();
        let file = dir.path().join(format!("{}.ks", def.name));
        std::fs::write(
            &file,
            kickstart::render(&def.render_input(), &pipeline(), &[]).unwrap(),
        )
        .unwrap();
        files.push(file);
    }
    const RUNS: u32 = 10;
    let time = |f: &dyn Fn(&Path)| {
        let start = Instant::now();
        for _ in 0..RUNS {
            for file in &files {
                f(file);
            }
        }
        start.elapsed() / (RUNS * files.len() as u32)
    };
    let ours = time(&|file| {
        let out = bin()
            .args(["kickstart", "lint", "--no-ksvalidator", "--version", "F41"])
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success());
    });
    let theirs = time(&|file| assert!(run_ksvalidator(file, "F41").status.success()));
    let in_process = {
        let texts: Vec<_> = files
            .iter()
            .map(|f| (std::fs::read_to_string(f).unwrap(), f))
            .collect();
        let start = Instant::now();
        for _ in 0..1000 {
            for (t, f) in &texts {
                assert!(!kickstart::lint(t, f, "F41").unwrap().has_errors());
            }
        }
        start.elapsed() / (1000 * texts.len() as u32)
    };
    println!(
        "per kickstart: atomic-factory kickstart lint --no-ksvalidator {ours:?}, \
         ksvalidator -v F41 {theirs:?} (ratio {:.1}x); kickstart::lint in-process {in_process:?}",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}
