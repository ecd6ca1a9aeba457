//! Issue #9 acceptance: our signatures are checked by the real tools (ostree 2022.7 over
//! HTTP with gpg-verify, `rpm -K`), and tampered, foreign-key and unsigned inputs are
//! refused by them and by us. Keys are made here with GnuPG, most without passphrase.

use std::path::{Path, PathBuf};
use std::process::Command;

use atomic_factory::ostree::detached::{DetachedMeta, commitmeta_path};

use atomic_factory::command::CommandExt;

use crate::support::gpg::GpgHome;
use crate::support::http::HttpServer;
use crate::support::ostree::ostree;
use crate::support::{benchmark_lock, capture, ours as af, require, run};

/// Runs and requires failure; returns stdout+stderr.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.run_unchecked().unwrap_or_else(|e| panic!("{e:#}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{cmd:?} should have failed:\n{text}");
    text
}

/// Commits a small tree with our `commit`, returns the checksum.
fn make_commit(repo: &Path, tree: &Path, branch: &str, subject: &str) -> String {
    let out = capture(
        af().arg("commit")
            .arg(format!("--repo={}", repo.display()))
            .args(["-b", branch, "-s", subject])
            .arg(format!("--tree=dir={}", tree.display())),
    );
    let c = out.trim().to_string();
    assert_eq!(c.len(), 64, "commit printed {out:?}");
    c
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
    tree: PathBuf,
    signer: GpgHome,
    signer_fpr: String,
    /// The signer's public key, binary and armored.
    pub_gpg: PathBuf,
    pub_asc: PathBuf,
}

fn fixture() -> Fixture {
    require(&["gpg", "gpgconf", "ostree"]);
    let tmp = tempfile::Builder::new().prefix("trust").tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let signer = GpgHome::new(&dir, "gnupg");
    // RSA like Fedora's keys; `default` is rsa3072 in GnuPG 2.2.
    let signer_fpr = signer.gen_key("Atomic Factory Test <signer@example.org>", "rsa3072");
    let pub_gpg = dir.join("signer.gpg");
    let pub_asc = dir.join("signer.asc");
    signer.export(&signer_fpr, &pub_gpg, false);
    signer.export(&signer_fpr, &pub_asc, true);
    let repo = dir.join("srv/repo");
    run(af().arg("init").arg(format!("--repo={}", repo.display())));
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(tree.join("usr/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "NAME=test\n").unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        repo,
        tree,
        signer,
        signer_fpr,
        pub_gpg,
        pub_asc,
    }
}

/// A client repo with an HTTP remote `origin` that has the given options and key.
fn make_client(dir: &Path, name: &str, url: &str, opts: &[&str], key: &Path) -> PathBuf {
    let repo = dir.join(name);
    std::fs::create_dir_all(&repo).unwrap();
    run(ostree(&repo).args(["init", "--mode=archive"]));
    let mut c = ostree(&repo);
    c.args(["remote", "add"]);
    for o in opts {
        c.arg(format!("--set={o}"));
    }
    c.arg(format!("--gpg-import={}", key.display()))
        .arg("origin")
        .arg(url);
    run(&mut c);
    repo
}

/// Tests 1 and 2: the real client pulls our signed commit with gpg-verify=true and
/// `ostree show` reports a good signature; a flipped signature byte, a foreign key and
/// no signature are each refused by the client and by our `verify`.
#[test]
fn real_ostree_client_verifies_our_commit_signatures() {
    let f = fixture();
    let other = GpgHome::new(&f.dir, "other");
    let other_fpr = other.gen_key("Someone Else <other@example.org>", "ed25519");

    let good = make_commit(&f.repo, &f.tree, "test/good", "good");
    let flipped = make_commit(&f.repo, &f.tree, "test/flipped", "flipped");
    let foreign = make_commit(&f.repo, &f.tree, "test/foreign", "foreign");
    make_commit(&f.repo, &f.tree, "test/unsigned", "unsigned");
    let expiring = make_commit(&f.repo, &f.tree, "test/expired", "expired");

    // Sign: by ref name with the GnuPG home (by e-mail), by checksum with a key file.
    run(af()
        .arg("gpg-sign")
        .arg(format!("--repo={}", f.repo.display()))
        .args(["test/good", "signer@example.org"])
        .arg(format!("--gpg-homedir={}", f.signer.dir.display())));
    let secret = f.dir.join("secret.asc");
    std::fs::write(
        &secret,
        run(f
            .signer
            .gpg()
            .args(["--armor", "--export-secret-keys", &f.signer_fpr]))
        .stdout,
    )
    .unwrap();
    run(af()
        .arg("gpg-sign")
        .arg(format!("--repo={}", f.repo.display()))
        .args([&flipped, &f.signer_fpr[f.signer_fpr.len() - 16..]])
        .arg(format!("--key-file={}", secret.display())));
    run(af()
        .arg("gpg-sign")
        .arg(format!("--repo={}", f.repo.display()))
        .args(["test/foreign", &other_fpr])
        .arg(format!("--gpg-homedir={}", other.dir.display())));
    assert!(commitmeta_path(&f.repo, &foreign).unwrap().is_file());
    // A key that expires 3 s after creation: sign while it is valid, check after.
    let short = GpgHome::new(&f.dir, "short");
    run(short.gpg().args([
        "--passphrase",
        "",
        "--quick-gen-key",
        "Short Lived <short@example.org>",
        "ed25519",
        "sign",
        "seconds=3",
    ]));
    let born = std::time::Instant::now();
    run(af()
        .arg("gpg-sign")
        .arg(format!("--repo={}", f.repo.display()))
        .args([&expiring, "short@example.org"])
        .arg(format!("--gpg-homedir={}", short.dir.display())));

    // Signing again with the same key keeps a single signature.
    run(af()
        .arg("gpg-sign")
        .arg(format!("--repo={}", f.repo.display()))
        .args([&good, "signer@example.org"])
        .arg(format!("--gpg-homedir={}", f.signer.dir.display())));
    let meta = DetachedMeta::read(&commitmeta_path(&f.repo, &good).unwrap()).unwrap();
    assert_eq!(meta.gpgsigs.len(), 1);

    // Flip one byte inside the signature value (the last MPI bytes).
    let meta_path = commitmeta_path(&f.repo, &flipped).unwrap();
    let mut meta = DetachedMeta::read(&meta_path).unwrap();
    let sig = &mut meta.gpgsigs[0];
    let n = sig.len();
    sig[n - 3] ^= 0x01;
    meta.write_in_repo(&f.repo, &meta_path).unwrap();

    let server = HttpServer::serve(&f.dir.join("srv"));
    let url = server.url.trim_end_matches('/');
    let client = make_client(
        &f.dir,
        "client",
        &format!("{url}/repo"),
        &["gpg-verify=true"],
        &f.pub_gpg,
    );

    // 1. Good signature: pull works, `ostree show` says so.
    run(ostree(&client).args(["pull", "origin", "test/good"]));
    let shown =
        capture(ostree(&client).args(["show", "--gpg-verify-remote=origin", "origin:test/good"]));
    assert!(
        shown.contains("Good signature from \"Atomic Factory Test <signer@example.org>\""),
        "{shown}"
    );
    // Our verify agrees, with the binary and the armored keyring.
    for keyring in [&f.pub_gpg, &f.pub_asc] {
        let out = capture(
            af().arg("verify")
                .arg(format!("--repo={}", f.repo.display()))
                .arg("test/good")
                .arg(format!("--keyring={}", keyring.display())),
        );
        assert!(out.contains("Good signature from"), "{out}");
    }
    // And straight from the GnuPG home's keybox (pubring.kbx).
    let out = capture(
        af().arg("verify")
            .arg(format!("--repo={}", f.repo.display()))
            .arg(&good)
            .arg(format!("--gpg-homedir={}", f.signer.dir.display())),
    );
    assert!(
        out.contains("Good signature from \"Atomic Factory Test <signer@example.org>\""),
        "{out}"
    );

    // 2. Each bad case is refused by the real client and by us. The short-lived key is
    // trusted by this client, so only its expiry can make the client refuse.
    let short_pub = f.dir.join("short.gpg");
    short.export("short@example.org", &short_pub, false);
    run(ostree(&client)
        .args(["remote", "gpg-import", "origin", "-k"])
        .arg(&short_pub));
    std::thread::sleep(std::time::Duration::from_secs(4).saturating_sub(born.elapsed()));
    let both = f.dir.join("signer+short.gpg");
    let mut bytes = std::fs::read(&f.pub_gpg).unwrap();
    bytes.extend(std::fs::read(&short_pub).unwrap());
    std::fs::write(&both, bytes).unwrap();
    // (ref, what the real client says, what our verify says)
    for (branch, client_says, expect) in [
        ("test/expired", "Key expired", "has expired"),
        ("test/flipped", "BAD signature", "BAD signature"),
        (
            "test/foreign",
            "public key not found",
            "public key not found",
        ),
        ("test/unsigned", "no signatures found", "no GPG signatures"),
    ] {
        let err = fails(ostree(&client).args(["pull", "origin", branch]));
        assert!(
            err.contains(client_says),
            "{branch}: client refused for another reason: {err}"
        );
        assert!(
            ostree(&client)
                .args(["rev-parse", &format!("origin:{branch}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap(),
            "{branch}: the ref must not exist after a refused pull"
        );
        let ours = fails(
            af().arg("verify")
                .arg(format!("--repo={}", f.repo.display()))
                .arg(branch)
                .arg(format!("--keyring={}", both.display())),
        );
        assert!(
            ours.to_lowercase().contains(&expect.to_lowercase()),
            "{branch}: our verify said: {ours}"
        );
    }
    // The commit signed by the other key verifies once that key is trusted: the
    // refusal above was about the key, not a broken signature.
    let other_pub = f.dir.join("other.gpg");
    other.export(&other_fpr, &other_pub, false);
    let client2 = make_client(
        &f.dir,
        "client2",
        &format!("{url}/repo"),
        &["gpg-verify=true"],
        &other_pub,
    );
    run(ostree(&client2).args(["pull", "origin", "test/foreign"]));
}

/// Our `.commitmeta` codec round-trips what the real `ostree gpg-sign` writes, byte for
/// byte, and keeps its signatures when we add ours.
#[test]
fn commitmeta_matches_real_ostree_gpg_sign() {
    let f = fixture();
    let commit = make_commit(&f.repo, &f.tree, "test/meta", "meta");
    run(ostree(&f.repo)
        .arg(format!("--gpg-homedir={}", f.signer.dir.display()))
        .args(["gpg-sign", &commit, &f.signer_fpr]));
    let path = commitmeta_path(&f.repo, &commit).unwrap();
    let theirs = std::fs::read(&path).unwrap();
    let meta = DetachedMeta::parse(&theirs, "commitmeta").unwrap();
    assert_eq!(meta.gpgsigs.len(), 1);
    assert_eq!(meta.to_bytes().unwrap(), theirs);

    // Add a second key's signature with ours; ostree then sees both as good.
    let second = f
        .signer
        .gen_key("Second Key <second@example.org>", "ed25519");
    run(af()
        .arg("gpg-sign")
        .arg(format!("--repo={}", f.repo.display()))
        .args([&commit, &second])
        .arg(format!("--gpg-homedir={}", f.signer.dir.display())));
    let meta = DetachedMeta::read(&path).unwrap();
    assert_eq!(meta.gpgsigs.len(), 2);
    assert_eq!(
        &meta.gpgsigs[0],
        &DetachedMeta::parse(&theirs, "").unwrap().gpgsigs[0]
    );
    let keys = f.dir.join("both.gpg");
    f.signer.export("", &keys, false);
    let server = HttpServer::serve(&f.dir.join("srv"));
    let url = server.url.trim_end_matches('/');
    let client = make_client(
        &f.dir,
        "client",
        &format!("{url}/repo"),
        &["gpg-verify=true"],
        &keys,
    );
    run(ostree(&client).args(["pull", "origin", "test/meta"]));
    let shown =
        capture(ostree(&client).args(["show", "--gpg-verify-remote=origin", "origin:test/meta"]));
    assert_eq!(shown.matches("Good signature").count(), 2, "{shown}");
}

/// A passphrase-protected key signs with `--gpg-passphrase-file`, from a GnuPG home and
/// from a key file, and the real client verifies the result; without the passphrase, or
/// with a wrong one, signing fails naming the problem and writes no signature.
#[test]
fn protected_keys_sign_with_their_passphrase_file() {
    let f = fixture();
    let locked = GpgHome::new(&f.dir, "locked");
    locked.gen_protected_key(
        "Locked Key <locked@example.org>",
        "ed25519",
        "correct horse",
    );
    let right = f.dir.join("right.pass");
    std::fs::write(&right, "correct horse\n").unwrap();
    let wrong = f.dir.join("wrong.pass");
    std::fs::write(&wrong, "battery staple\n").unwrap();
    let secret = f.dir.join("locked.sec.asc");
    std::fs::write(
        &secret,
        run(locked.gpg().args([
            "--pinentry-mode",
            "loopback",
            "--passphrase-file",
            right.to_str().unwrap(),
            "--armor",
            "--export-secret-keys",
            "locked@example.org",
        ]))
        .stdout,
    )
    .unwrap();
    let public = f.dir.join("locked.pub.gpg");
    locked.export("locked@example.org", &public, false);
    let home = format!("--gpg-homedir={}", locked.dir.display());
    let file = format!("--key-file={}", secret.display());
    let from_home = make_commit(&f.repo, &f.tree, "test/home", "home");
    let from_file = make_commit(&f.repo, &f.tree, "test/file", "file");
    let sign = |commit: &str, source: &str, pass: Option<&Path>| {
        let mut c = af();
        c.arg("gpg-sign")
            .arg(format!("--repo={}", f.repo.display()))
            .args([commit, "locked@example.org", source]);
        if let Some(p) = pass {
            c.arg(format!("--gpg-passphrase-file={}", p.display()));
        }
        c
    };

    // The failures first: a passphrase given to gpg-agent could be cached by it.
    for source in [&home, &file] {
        let err = fails(&mut sign(&from_home, source, None));
        assert!(
            err.contains("passphrase-file"),
            "{source}, no passphrase: {err}"
        );
        let err = fails(&mut sign(&from_home, source, Some(&wrong)));
        assert!(
            err.contains("wrong passphrase") && err.contains(&wrong.display().to_string()),
            "{source}, wrong passphrase: {err}"
        );
    }
    assert!(
        !commitmeta_path(&f.repo, &from_home).unwrap().exists(),
        "a failed signing wrote a .commitmeta"
    );

    run(&mut sign(&from_home, &home, Some(&right)));
    run(&mut sign(&from_file, &file, Some(&right)));
    run(af()
        .args(["summary", "-u", "--gpg-sign=locked@example.org"])
        .arg(format!("--repo={}", f.repo.display()))
        .arg(&file)
        .arg(format!("--gpg-passphrase-file={}", right.display())));

    let server = HttpServer::serve(&f.dir.join("srv"));
    let url = server.url.trim_end_matches('/');
    let opts = ["gpg-verify=true", "gpg-verify-summary=true"];
    let client = make_client(&f.dir, "client", &format!("{url}/repo"), &opts, &public);
    for r in ["test/home", "test/file"] {
        run(ostree(&client).args(["pull", "origin", r]));
        let shown = capture(ostree(&client).args([
            "show",
            "--gpg-verify-remote=origin",
            &format!("origin:{r}"),
        ]));
        assert!(
            shown.contains("Good signature from \"Locked Key <locked@example.org>\""),
            "{r}: {shown}"
        );
    }
}

/// Test 3: `gpg-verify-summary=true` accepts our summary.sig (`ostree remote refs`),
/// refuses a tampered summary and a missing summary.sig.
#[test]
fn real_ostree_client_verifies_our_summary_signature() {
    let f = fixture();
    make_commit(&f.repo, &f.tree, "test/x86_64", "summary test");
    let summary_u = || {
        run(af()
            .args(["summary", "-u"])
            .arg(format!("--repo={}", f.repo.display()))
            .arg(format!("--gpg-sign={}", f.signer_fpr))
            .arg(format!("--gpg-homedir={}", f.signer.dir.display())));
    };
    // Twice: the second run must replace the first signature, not keep a stale one.
    summary_u();
    summary_u();
    let sig = DetachedMeta::read(&f.repo.join("summary.sig")).unwrap();
    assert_eq!(sig.gpgsigs.len(), 1);
    // A wrong key id fails before anything is rewritten: the signed summary stays.
    let before = std::fs::read(f.repo.join("summary")).unwrap();
    let err = fails(
        af().args(["summary", "-u"])
            .arg(format!("--repo={}", f.repo.display()))
            .arg("--gpg-sign=nobody@example.org")
            .arg(format!("--gpg-homedir={}", f.signer.dir.display())),
    );
    assert!(err.contains("nobody@example.org"), "{err}");
    assert_eq!(std::fs::read(f.repo.join("summary")).unwrap(), before);
    assert!(f.repo.join("summary.sig").is_file());

    let server = HttpServer::serve(&f.dir.join("srv"));
    let url = server.url.trim_end_matches('/');
    let opts = ["gpg-verify=true", "gpg-verify-summary=true"];
    let good = make_client(&f.dir, "good", &format!("{url}/repo"), &opts, &f.pub_gpg);
    let refs = capture(ostree(&good).args(["remote", "refs", "origin"]));
    assert!(refs.contains("origin:test/x86_64"), "{refs}");
    run(af()
        .arg("verify")
        .arg(format!("--repo={}", f.repo.display()))
        .arg("--summary")
        .arg(format!("--keyring={}", f.pub_asc.display())));

    // What an image ships: our armored public key and a remotes.d entry pointing at it
    // (gpgkeypath, no keyring import). The real client verifies summary and commit with it.
    let signer =
        atomic_factory::ostree::gpg::Signer::from_gpg_homedir(&f.signer.dir, &f.signer_fpr, None)
            .unwrap();
    let shipped_key = f.dir.join("RPM-GPG-KEY-test");
    std::fs::write(&shipped_key, signer.public_key_armored().unwrap()).unwrap();
    run(af()
        .arg("gpg-sign")
        .arg(format!("--repo={}", f.repo.display()))
        .args(["test/x86_64", &f.signer_fpr])
        .arg(format!("--gpg-homedir={}", f.signer.dir.display())));
    let shipped = f.dir.join("shipped");
    std::fs::create_dir(&shipped).unwrap();
    run(ostree(&shipped).args(["init", "--mode=archive"]));
    let mut config = std::fs::read_to_string(shipped.join("config")).unwrap();
    config.push_str(&atomic_factory::ostree::sign::remote_conf(
        "origin",
        &format!("{url}/repo"),
        &shipped_key.display().to_string(),
        true,
    ));
    std::fs::write(shipped.join("config"), config).unwrap();
    run(ostree(&shipped).args(["pull", "origin", "test/x86_64"]));
    let shown = capture(ostree(&shipped).args([
        "show",
        "--gpg-verify-remote=origin",
        "origin:test/x86_64",
    ]));
    assert!(shown.contains("Good signature"), "{shown}");

    // Tampered summary: flip a byte of a ref name.
    let summary = f.repo.join("summary");
    let orig = std::fs::read(&summary).unwrap();
    let mut bad = orig.clone();
    let at = bad
        .windows(11)
        .position(|w| w == b"test/x86_64")
        .expect("ref name in summary");
    bad[at] = b'T';
    std::fs::write(&summary, &bad).unwrap();
    let tampered = make_client(
        &f.dir,
        "tampered",
        &format!("{url}/repo"),
        &opts,
        &f.pub_gpg,
    );
    let err = fails(ostree(&tampered).args(["remote", "refs", "origin"]));
    assert!(
        err.contains("GPG") || err.contains("signature"),
        "refused for another reason: {err}"
    );
    fails(
        af().arg("verify")
            .arg(format!("--repo={}", f.repo.display()))
            .arg("--summary")
            .arg(format!("--keyring={}", f.pub_asc.display())),
    );

    // Restored summary but no summary.sig: refused.
    std::fs::write(&summary, &orig).unwrap();
    std::fs::remove_file(f.repo.join("summary.sig")).unwrap();
    let nosig = make_client(&f.dir, "nosig", &format!("{url}/repo"), &opts, &f.pub_gpg);
    let err = fails(ostree(&nosig).args(["remote", "refs", "origin"]));
    assert!(err.contains("no summary signatures found"), "{err}");
}

/// Builds a dependency-free package with the rpm crate (signed copies are made by rpmsign).
fn build_rpm(path: &Path) {
    let pkg = rpm::PackageBuilder::new("trust-hello", "1.0", "MIT", "noarch", "gpgcheck test")
        .release("1")
        .with_file_contents(
            "hello from a signed package\n",
            rpm::FileOptions::new("/usr/share/trust-hello/hello.txt"),
        )
        .unwrap()
        .build()
        .unwrap();
    pkg.write_file(path).unwrap();
}

/// Test 4: `compose tree` with `gpgcheck=1`: a package signed with the repository key is
/// composed (and the commit signed with `--gpg-sign` pulls with gpg-verify on the real
/// client); one signed with another key, an unsigned one and a tampered signed one are
/// refused with the package's name, no ref is written; `rpm -K` (with the repository
/// key imported) agrees with every verdict.
#[test]
fn compose_gpgcheck_agrees_with_rpm_k() {
    require(&["rpmsign", "rpm"]);
    let f = fixture();
    let other = GpgHome::new(&f.dir, "other");
    let other_fpr = other.gen_key("Other Packager <other@example.org>", "ed25519");
    let src = f.dir.join("trust-hello-1.0-1.noarch.rpm");
    build_rpm(&src);

    let sign = |home: &GpgHome, keyid: &str, name: &str| -> PathBuf {
        let p = f.dir.join(name);
        std::fs::copy(&src, &p).unwrap();
        run(Command::new("rpmsign")
            .arg("--define")
            .arg(format!("_gpg_name {keyid}"))
            .arg("--define")
            .arg(format!("_gpg_path {}", home.dir.display()))
            // Debian's rpm macros name `gpg2`, which Debian does not ship.
            .args(["--define", "__gpg /usr/bin/gpg", "--addsign"])
            .arg(&p)
            .stdin(std::process::Stdio::null()));
        p
    };
    let good = sign(&f.signer, &f.signer_fpr, "good.rpm");
    let wrong = sign(&other, &other_fpr, "wrong.rpm");
    // Tampered: the good package with its last payload byte changed.
    let tampered = f.dir.join("tampered.rpm");
    let mut bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&tampered, bytes).unwrap();

    // rpm -K with only the repository key in a private rpmdb.
    let dbpath = f.dir.join("rpmdb");
    std::fs::create_dir(&dbpath).unwrap();
    let rpm = || {
        let mut c = Command::new("rpm");
        c.arg("--dbpath").arg(&dbpath);
        c
    };
    run(rpm().arg("--initdb"));
    run(rpm().arg("--import").arg(&f.pub_asc));

    // (case, package, accepted, gpgcheck on)
    let cases = [
        ("good", &good, true, true),
        ("wrong", &wrong, false, true),
        ("unsigned", &src, false, true),
        ("tampered", &tampered, false, true),
        // The same unsigned package from a repository without gpgcheck is fine.
        ("nocheck", &src, true, false),
    ];
    for (case, pkg, accept, gpgcheck) in cases {
        let w = f.dir.join(format!("compose-{case}"));
        let rpms = w.join("rpms");
        std::fs::create_dir_all(&rpms).unwrap();
        std::fs::copy(pkg, rpms.join("trust-hello-1.0-1.noarch.rpm")).unwrap();
        std::fs::write(
            w.join("t.repo"),
            format!(
                "[t]\nname=t\nbaseurl=file://{}\ngpgcheck={}\ngpgkey=file://{}\n",
                rpms.display(),
                u8::from(gpgcheck),
                f.pub_asc.display()
            ),
        )
        .unwrap();
        std::fs::write(
            w.join("tf.yaml"),
            "ref: test/x86_64/base\nrepos: [t]\npackages:\n  - trust-hello\n",
        )
        .unwrap();
        let repo = w.join("repo");
        run(af().arg("init").arg(format!("--repo={}", repo.display())));
        let mut compose = af();
        compose
            .args(["compose", "tree", "-q"])
            .arg(format!("--repo={}", repo.display()))
            .arg(format!("--gpg-sign={}", f.signer_fpr))
            .arg(format!("--gpg-homedir={}", f.signer.dir.display()))
            .arg(w.join("tf.yaml"));
        if accept {
            let commit = capture(&mut compose).trim().to_string();
            // The composed commit carries our signature; the real client checks it.
            let client = make_client(
                &w,
                "client",
                &format!("file://{}", repo.display()),
                &["gpg-verify=true"],
                &f.pub_gpg,
            );
            run(ostree(&client).args(["pull", "origin", "test/x86_64/base"]));
            let shown =
                capture(ostree(&client).args(["show", "--gpg-verify-remote=origin", &commit]));
            assert!(shown.contains("Good signature"), "{case}: {shown}");
        } else {
            let err = fails(&mut compose);
            assert!(
                err.contains("trust-hello-1.0-1.noarch"),
                "{case}: the error must name the package: {err}"
            );
            assert!(err.contains("gpgcheck"), "{case}: {err}");
            assert!(
                !repo.join("refs/heads/test/x86_64/base").exists(),
                "{case}: no ref may be written"
            );
        }
        if gpgcheck {
            let k = rpm()
                .arg("-K")
                .arg(pkg)
                .run_unchecked()
                .unwrap_or_else(|e| panic!("{e:#}"));
            let k_text = String::from_utf8_lossy(&k.stdout).into_owned();
            let rpm_accepts = k.status.success() && k_text.contains("signatures OK");
            assert_eq!(rpm_accepts, accept, "{case}: rpm -K said {k_text}");
        }
    }

    // Library level: specific reasons, and binary key files work like armored ones.
    use atomic_factory::compose::gpgcheck;
    let repo_file = f.dir.join("x.repo");
    let keyring =
        gpgcheck::load_gpgkeys(&format!("file://{}", f.pub_gpg.display()), &repo_file).unwrap();
    gpgcheck::verify_rpm(&good, &keyring).unwrap();
    let e = format!("{:#}", gpgcheck::verify_rpm(&src, &keyring).unwrap_err());
    assert!(e.contains("is not signed"), "{e}");
    let e = format!("{:#}", gpgcheck::verify_rpm(&wrong, &keyring).unwrap_err());
    assert!(e.contains("signature check failed"), "{e}");
    let err = gpgcheck::load_gpgkeys("https://x/key", &repo_file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("file://"), "{err}");
}

/// Benchmark (run: `cargo test --release --test it bench_sign_and_verify -- --ignored --nocapture`):
/// signing and verifying N commits with ours vs the real `ostree gpg-sign` / `ostree show`
/// (gpgme), same key and repository, in the same run. Prints the ratios.
#[test]
#[ignore]
fn bench_sign_and_verify_vs_ostree() {
    const N: usize = 20;
    let _bench = benchmark_lock();
    let f = fixture();
    let commits: Vec<String> = (0..2 * N)
        .map(|i| make_commit(&f.repo, &f.tree, &format!("bench/{i}"), &format!("c{i}")))
        .collect();
    let (ours, theirs) = commits.split_at(N);
    let secret = f.dir.join("secret.asc");
    std::fs::write(
        &secret,
        run(f
            .signer
            .gpg()
            .args(["--armor", "--export-secret-keys", &f.signer_fpr]))
        .stdout,
    )
    .unwrap();
    let t = std::time::Instant::now();
    for c in ours {
        run(af()
            .arg("gpg-sign")
            .arg(format!("--repo={}", f.repo.display()))
            .args([c, &f.signer_fpr])
            .arg(format!("--gpg-homedir={}", f.signer.dir.display())));
    }
    let ours_home = t.elapsed();
    // Re-sign is a no-op, so time key-file signing on the ostree half first, then wipe it.
    let t = std::time::Instant::now();
    for c in theirs {
        run(af()
            .arg("gpg-sign")
            .arg(format!("--repo={}", f.repo.display()))
            .args([c, &f.signer_fpr])
            .arg(format!("--key-file={}", secret.display())));
    }
    let ours_file = t.elapsed();
    for c in theirs {
        std::fs::remove_file(commitmeta_path(&f.repo, c).unwrap()).unwrap();
    }
    let t = std::time::Instant::now();
    for c in theirs {
        run(ostree(&f.repo)
            .arg(format!("--gpg-homedir={}", f.signer.dir.display()))
            .args(["gpg-sign", c, &f.signer_fpr]));
    }
    let ostree_sign = t.elapsed();
    // Verify all 2N signatures: ours with the exported key, ostree show with the homedir.
    let t = std::time::Instant::now();
    for c in &commits {
        run(af()
            .arg("verify")
            .arg(format!("--repo={}", f.repo.display()))
            .arg(c)
            .arg(format!("--keyring={}", f.pub_gpg.display())));
    }
    let ours_verify = t.elapsed();
    let client = make_client(
        &f.dir,
        "client",
        &format!("file://{}", f.repo.display()),
        &["gpg-verify=true"],
        &f.pub_gpg,
    );
    let mut pull = ostree(&client);
    pull.args(["pull", "origin"]);
    for i in 0..2 * N {
        pull.arg(format!("bench/{i}"));
    }
    run(&mut pull);
    let t = std::time::Instant::now();
    for c in &commits {
        let out = capture(ostree(&client).args(["show", "--gpg-verify-remote=origin", c]));
        assert!(out.contains("Good signature"), "{out}");
    }
    let ostree_verify = t.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / N as f64;
    let per2 = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / (2 * N) as f64;
    println!("sign, per commit (process start included), rsa3072:");
    println!(
        "  atomic-factory gpg-sign --gpg-homedir: {:7.1} ms",
        per(ours_home)
    );
    println!(
        "  atomic-factory gpg-sign --key-file:    {:7.1} ms",
        per(ours_file)
    );
    println!(
        "  ostree gpg-sign (gpgme):               {:7.1} ms",
        per(ostree_sign)
    );
    println!(
        "  ratio ostree/ours: homedir {:.2}x, key file {:.2}x",
        ostree_sign.as_secs_f64() / ours_home.as_secs_f64(),
        ostree_sign.as_secs_f64() / ours_file.as_secs_f64()
    );
    println!("verify, per commit:");
    println!(
        "  atomic-factory verify:                 {:7.1} ms",
        per2(ours_verify)
    );
    println!(
        "  ostree show --gpg-verify-remote:       {:7.1} ms",
        per2(ostree_verify)
    );
    println!(
        "  ratio ostree/ours: {:.2}x",
        ostree_verify.as_secs_f64() / ours_verify.as_secs_f64()
    );
}
