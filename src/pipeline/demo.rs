//! The embedded demo image: `kickstarts/demo` and `templates/` are compiled into the binary,
//! so `atomic-factory build` with no argument works from anywhere; only the stand-in
//! installer and distribution (`vm/out`, built by `vm/prepare`) come from disk.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use include_dir::{Dir, include_dir};

static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/kickstarts/demo");
static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Files under `vm/out` the demo needs; a missing one means `vm/prepare` has not run.
const FIXTURES: [&str; 3] = [
    "standin/vmlinuz",
    "standin/installer.img",
    "distro/repo/repodata/repomd.xml",
];

/// Writes the demo definition under `dest` in the project's own layout
/// (`kickstarts/demo/`, `templates/`, `vm/out` → the stand-in fixtures) and returns the
/// path of its `image.yaml`. Files are rewritten only when their content differs, so the
/// stage cache sees unchanged inputs as unchanged.
pub fn materialize(dest: &Path) -> Result<PathBuf> {
    let vm_out = locate_vm_out()?;
    write_tree(&DEMO, &dest.join("kickstarts/demo"))?;
    write_tree(&TEMPLATES, &dest.join("templates"))?;
    let link = dest.join("vm/out");
    std::fs::create_dir_all(dest.join("vm"))
        .with_context(|| format!("creating {}", dest.display()))?;
    if std::fs::read_link(&link).ok().as_deref() != Some(vm_out.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&vm_out, &link)
            .with_context(|| format!("linking {} to {}", link.display(), vm_out.display()))?;
    }
    Ok(dest.join("kickstarts/demo/image.yaml"))
}

/// `$ATOMIC_FACTORY_VM_OUT`, else `./vm/out`, else the checkout this binary was built from.
fn locate_vm_out() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("ATOMIC_FACTORY_VM_OUT")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("vm/out"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/out"),
        ])
        .collect();
    for dir in &candidates {
        if FIXTURES.iter().all(|f| dir.join(f).exists()) {
            return std::fs::canonicalize(dir)
                .with_context(|| format!("resolving {}", dir.display()));
        }
    }
    bail!(
        "the demo needs the stand-in installer and distribution ({}), looked in {}: run vm/prepare first",
        FIXTURES.join(", "),
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn write_tree(dir: &Dir<'_>, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for file in dir.files() {
        let name = file
            .path()
            .file_name()
            .context("embedded file without a name")?;
        let path = dest.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(file.contents()) {
            crate::fsutil::write_atomic(&path, file.contents())?;
        }
    }
    for sub in dir.dirs() {
        let name = sub
            .path()
            .file_name()
            .context("embedded directory without a name")?;
        write_tree(sub, &dest.join(name))?;
    }
    Ok(())
}
