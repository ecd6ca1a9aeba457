//! Acceptance for dependency resolution (issue 3, item 2), on rpm-md metadata that
//! `createrepo_c` made from packages built here with `rpmbuild`.

use atomic_factory::compose::resolve::{Request, resolve};
use atomic_factory::compose::sources::{RepoDef, load_repo};

use crate::support::compose::*;
use crate::support::require;

/// Builds `specs` into a fresh rpm-md repo and resolves `wanted`; returns sorted NEVRAs.
fn solve(specs: &[Spec], wanted: &[&str]) -> anyhow::Result<Vec<String>> {
    require(&["rpmbuild", "createrepo_c"]);
    let w = Work::new();
    for s in specs {
        w.add(s);
    }
    createrepo(&w.rpms());
    let def = RepoDef {
        id: "t".into(),
        dir: w.rpms(),
        origin: w.path().join("t.repo"),
    };
    let pool = load_repo(&def, &[std::env::consts::ARCH, "noarch"])?;
    let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    let got = resolve(
        &pool,
        &Request {
            packages: &wanted,
            repo_packages: &[],
        },
    )?;
    Ok(got.iter().map(|p| p.nevra()).collect())
}

#[test]
fn missing_dependency_error_shows_the_chain() {
    let e = err_text(solve(
        &[
            Spec::new("top", "1").req("middle"),
            Spec::new("middle", "1").req("bottom >= 2"),
            Spec::new("bottom", "1.0"),
        ],
        &["top"],
    ));
    assert!(e.contains("dependency resolution failed"), "{e}");
    for part in ["top", "middle", "bottom >= 2"] {
        assert!(e.contains(part), "chain must mention {part:?}: {e}");
    }
    // The only candidate is shown as not matching.
    assert!(e.contains("Only bottom-1.0-1.noarch is available"), "{e}");
}

#[test]
fn versioned_requires_pick_the_matching_version() {
    let got = solve(
        &[
            Spec::new("c", "1").req("d < 2"),
            Spec::new("d", "1.5"),
            Spec::new("d", "2.5"),
        ],
        &["c"],
    )
    .unwrap();
    assert_eq!(got, ["c-1-1.noarch", "d-1.5-1.noarch"]);
}

#[test]
fn two_candidate_versions_newest_wins() {
    let got = solve(
        &[
            Spec::new("u", "1.0"),
            Spec::new("u", "1.10"),
            Spec::new("u", "1.9"),
        ],
        &["u"],
    )
    .unwrap();
    assert_eq!(got, ["u-1.10-1.noarch"], "rpm order: 1.10 > 1.9");
}

#[test]
fn file_provides_satisfy_path_requires() {
    let got = solve(
        &[
            Spec::new("e", "1").req("/usr/libexec/helper"),
            Spec::new("f", "1").file("/usr/libexec/helper", b"x", 0o755),
        ],
        &["e"],
    )
    .unwrap();
    assert_eq!(got, ["e-1-1.noarch", "f-1-1.noarch"]);
}

#[test]
fn rich_dependencies() {
    // (h or i): only i exists.
    let got = solve(
        &[
            Spec::new("g", "1").req("(h or i >= 2)"),
            Spec::new("i", "2"),
        ],
        &["g"],
    )
    .unwrap();
    assert_eq!(got, ["g-1-1.noarch", "i-2-1.noarch"]);
    // (j if k): j comes only when k is installed.
    let specs = [
        Spec::new("a", "1").req("(j if k)"),
        Spec::new("j", "1"),
        Spec::new("k", "1"),
    ];
    assert_eq!(solve(&specs, &["a"]).unwrap(), ["a-1-1.noarch"]);
    assert_eq!(
        solve(&specs, &["a", "k"]).unwrap(),
        ["a-1-1.noarch", "j-1-1.noarch", "k-1-1.noarch"]
    );
    // (x and y) with y missing fails.
    let e = err_text(solve(
        &[Spec::new("b", "1").req("(x and y)"), Spec::new("x", "1")],
        &["b"],
    ));
    assert!(e.contains('y'), "{e}");
}

#[test]
fn conflicts_steer_and_block() {
    // l conflicts with m >= 2, so the older m is chosen.
    let got = solve(
        &[
            Spec::new("l", "1").conflicts("m >= 2"),
            Spec::new("m", "1"),
            Spec::new("m", "2"),
        ],
        &["l", "m"],
    )
    .unwrap();
    assert_eq!(got, ["l-1-1.noarch", "m-1-1.noarch"]);
    // q conflicts with r outright.
    let e = err_text(solve(
        &[Spec::new("q", "1").conflicts("r"), Spec::new("r", "1")],
        &["q", "r"],
    ));
    assert!(
        e.contains("dependency resolution failed") && e.contains('q') && e.contains('r'),
        "{e}"
    );
}

#[test]
fn obsoletes_replace_the_old_package() {
    let specs = [
        Spec::new("s", "1.0"),
        Spec::new("s-ng", "2.0").prov("s = 2.0").obsoletes("s < 2"),
        Spec::new("t", "1").req("s"),
    ];
    let got = solve(&specs, &["s-ng", "t"]).unwrap();
    assert_eq!(
        got,
        ["s-ng-2.0-1.noarch", "t-1-1.noarch"],
        "s 1.0 is obsoleted by s-ng"
    );
}

#[test]
fn noarch_and_basearch_mix() {
    let got = solve(
        &[Spec::new("v", "1").arch("").req("w"), Spec::new("w", "1")],
        &["v"],
    )
    .unwrap();
    assert_eq!(
        got,
        [
            format!("v-1-1.{}", std::env::consts::ARCH),
            "w-1-1.noarch".to_string()
        ]
    );
}
