//! The treefile: rpm-ostree's YAML/JSON compose description, with `include` merging.
//!
//! Keys are rpm-ostree's. A key we do not know is an error naming it (a typo must not be
//! silently ignored); a key rpm-ostree knows but we do not implement is an error saying so,
//! unless it is set to its no-op value (false, empty), so shared treefiles still load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

/// Keys we implement.
/// Include nesting deeper than this is a mistake (rpm-ostree's own treefiles nest 3 deep).
const MAX_INCLUDE_DEPTH: usize = 50;
/// Included files in all, counting repeats.
const MAX_INCLUDED_FILES: usize = 256;

const IMPLEMENTED: &[&str] = &[
    "ref",
    "repos",
    "repo-packages",
    "packages",
    "exclude-packages",
    "include",
    "documentation",
    "add-files",
    "remove-files",
    "units",
    "default-target",
    "automatic-version-prefix",
    "mutate-os-release",
    "boot-location",
    "tmp-is-dir",
    "etc-group-members",
    "install-langs",
    "recommends",
    "releasever",
    "basearch",
    "add-commit-metadata",
    "selinux",
];

/// Keys rpm-ostree knows that we do not implement (yet).
const NOT_IMPLEMENTED: &[&str] = &[
    "postprocess-script",
    "postprocess",
    "initramfs-args",
    "machineid-compat",
    "check-passwd",
    "check-groups",
    "preserve-passwd",
    "ignore-removed-users",
    "ignore-removed-groups",
    "container",
    "container-cmd",
    "readonly-executables",
    "cliwrap",
    "rpmdb",
    "rpmdb-normalize",
    "opt-usrlocal",
    "conditional-include",
    "arch-include",
    "variables",
    "repovars",
    "modules",
    "lockfile-repos",
    "gpg-key",
    "gpg_key",
    "metadata",
    "remove-from-packages",
    "sysusers",
    "ostree-layers",
    "ostree-override-layers",
    "rojig",
    "bootstrap_packages",
    "kernel",
    "base-refspec",
    "selinux-label-version",
    "add-commit-metadata-from-file",
    "exclude-packages-from-repos",
    "scripts",
];

/// Where an rpm-ostree `packages-ARCH` key applies (the only pattern key).
fn is_arch_packages_key(key: &str) -> bool {
    key.strip_prefix("packages-")
        .is_some_and(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// One `repo-packages` entry: packages that must come from the named repo.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepoPackages {
    /// The repository's id (a `.repo` section name).
    pub repo: String,
    /// Package names to install from it.
    pub packages: Vec<String>,
}

/// The merged treefile.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Treefile {
    /// `ref`: the ostree ref to commit to.
    #[serde(rename = "ref")]
    pub ostree_ref: Option<String>,
    /// `repos`: repository ids, each a `NAME.repo` file next to the treefile or a section of one.
    #[serde(default)]
    pub repos: Vec<String>,
    /// `repo-packages`: packages pinned to one repository.
    #[serde(default)]
    pub repo_packages: Vec<RepoPackages>,
    /// `packages`: packages to install, with their dependencies.
    #[serde(default)]
    pub packages: Vec<String>,
    /// `exclude-packages`: names never installed; a trailing `*` matches a prefix.
    #[serde(default)]
    pub exclude_packages: Vec<String>,
    /// `documentation`: whether %doc files are installed (default true).
    pub documentation: Option<bool>,
    /// `add-files`: (source relative to the treefile, absolute destination) pairs.
    #[serde(default)]
    pub add_files: Vec<(String, String)>,
    /// `remove-files`: paths relative to the root, removed with everything under them.
    #[serde(default)]
    pub remove_files: Vec<String>,
    /// `units`: systemd units to enable in multi-user.target.
    #[serde(default)]
    pub units: Vec<String>,
    /// `default-target`: the systemd default target.
    pub default_target: Option<String>,
    /// `automatic-version-prefix`: commit versions PREFIX, PREFIX.1, ...
    /// (`<date:%Y%m%d>` expanded).
    pub automatic_version_prefix: Option<String>,
    /// `mutate-os-release`: the version string in os-release to replace by the commit's version.
    pub mutate_os_release: Option<String>,
    /// `boot-location`: only `modules` (and the legacy `new`) are accepted.
    pub boot_location: Option<String>,
    /// `tmp-is-dir`: /tmp a sticky directory instead of a link to sysroot/tmp.
    pub tmp_is_dir: Option<bool>,
    /// `etc-group-members`: not implemented; a non-empty list is refused.
    #[serde(default)]
    pub etc_group_members: Vec<String>,
    /// `install-langs`: not implemented; a non-empty list is refused.
    #[serde(default)]
    pub install_langs: Vec<String>,
    /// `recommends`: only false (weak dependencies are not installed).
    pub recommends: Option<bool>,
    /// `releasever`: substituted for `$releasever` in `.repo` files.
    pub releasever: Option<String>,
    /// `basearch`: substituted for `$basearch`; defaults to the host's.
    pub basearch: Option<String>,
    /// `add-commit-metadata`: extra commit metadata (strings, bools, unsigned numbers,
    /// string lists).
    #[serde(default)]
    pub add_commit_metadata: BTreeMap<String, Value>,
    /// `selinux`: only false (no SELinux labels are written).
    pub selinux: Option<bool>,
    /// `packages-ARCH` lists, keyed by arch.
    #[serde(skip)]
    pub arch_packages: BTreeMap<String, Vec<String>>,
    /// Directory of the top-level treefile: `.repo` files and `add-files` sources are found there.
    #[serde(skip)]
    pub dir: PathBuf,
    /// Every treefile read (the top one first), for the input hash and error messages.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    /// The merged document, canonical JSON: the treefile part of the input hash.
    #[serde(skip)]
    pub canonical: String,
}

impl Treefile {
    /// The packages to install on `arch`: `packages` plus `packages-ARCH`, split on whitespace
    /// as rpm-ostree does (`packages: ["a b"]` is two packages).
    pub fn packages_for(&self, arch: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let extra = self.arch_packages.get(arch).into_iter().flatten();
        for p in self.packages.iter().chain(extra) {
            out.extend(p.split_whitespace().map(str::to_string));
        }
        out
    }
}

/// Reads a treefile and its includes, validates every key, merges and types it.
pub fn load(path: &Path) -> Result<Treefile> {
    let mut files = Vec::new();
    let merged = load_merged(path, &mut files, &mut Vec::new(), true)?;
    let mut arch_packages = BTreeMap::new();
    let mut obj = merged;
    let keys: Vec<String> = obj.keys().cloned().collect();
    for k in keys {
        if is_arch_packages_key(&k) {
            let v = obj.remove(&k).unwrap();
            let list: Vec<String> = serde_json::from_value(v).with_context(|| {
                format!(
                    "{}: key `{k}` must be a list of package names",
                    path.display()
                )
            })?;
            arch_packages.insert(k["packages-".len()..].to_string(), list);
        }
    }
    let canonical = serde_json::to_string(&Value::Object(
        obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    ))?;
    obj.remove("include");
    let mut tf: Treefile = serde_json::from_value(Value::Object(obj.into_iter().collect()))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    tf.arch_packages = arch_packages;
    tf.dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    tf.files = files;
    tf.canonical = canonical;
    validate(&tf, path)?;
    Ok(tf)
}

/// The treefile's `ref:` (includes merged) without checking its other keys: rendering a
/// kickstart needs only the ref, also of a treefile we cannot compose yet.
pub fn read_ref(path: &Path) -> Result<Option<String>> {
    let merged = load_merged(path, &mut Vec::new(), &mut Vec::new(), false)?;
    match merged.get("ref") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) => Ok(Some(r.clone())),
        Some(other) => bail!(
            "treefile {}: ref must be a string, not {other}",
            path.display()
        ),
    }
}

/// Checks values we accept only in part, with the fix in the message.
fn validate(tf: &Treefile, path: &Path) -> Result<()> {
    let p = path.display();
    if let Some(loc) = &tf.boot_location
        && loc != "modules"
        && loc != "new"
    {
        bail!(
            "{p}: boot-location: {loc:?} is not implemented; use \"modules\" (kernel in usr/lib/modules/$kver, the rpm-ostree default)"
        );
    }
    if !tf.etc_group_members.is_empty() {
        bail!("{p}: etc-group-members is not implemented yet; remove it from the treefile");
    }
    if !tf.install_langs.is_empty() {
        bail!("{p}: install-langs is not implemented yet (all languages are installed); remove it");
    }
    if tf.recommends == Some(true) {
        bail!(
            "{p}: recommends: true is not implemented yet (weak dependencies are not installed); set recommends: false or list the packages"
        );
    }
    if tf.selinux == Some(true) {
        bail!(
            "{p}: selinux: true is not implemented (no SELinux labels are written); set selinux: false"
        );
    }
    if let Some(m) = &tf.mutate_os_release
        && m.is_empty()
    {
        bail!("{p}: mutate-os-release must name the version string to replace");
    }
    Ok(())
}

type Obj = BTreeMap<String, Value>;

fn parse_file(path: &Path) -> Result<Obj> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading treefile {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let value: Value = if is_json {
        serde_json::from_str(&text)
            .with_context(|| format!("parsing treefile {} as JSON", path.display()))?
    } else {
        serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing treefile {} as YAML: {e}", path.display()))?
    };
    match value {
        Value::Object(m) => Ok(m.into_iter().collect()),
        Value::Null => Ok(Obj::new()),
        _ => bail!(
            "treefile {}: the top level must be a mapping of keys",
            path.display()
        ),
    }
}

fn check_keys(obj: &Obj, path: &Path) -> Result<()> {
    for (k, v) in obj {
        if IMPLEMENTED.contains(&k.as_str()) || is_arch_packages_key(k) {
            continue;
        }
        if NOT_IMPLEMENTED.contains(&k.as_str()) {
            let noop = match v {
                Value::Null | Value::Bool(false) => true,
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::String(s) => s.is_empty(),
                _ => false,
            };
            if noop {
                continue;
            }
            bail!(
                "treefile {}: key `{k}` is an rpm-ostree key that atomic-factory does not implement yet; remove it (or set it to false/empty)",
                path.display()
            );
        }
        let hint = IMPLEMENTED
            .iter()
            .chain(NOT_IMPLEMENTED)
            .min_by_key(|c| strsim::levenshtein(c, k))
            .filter(|c| strsim::levenshtein(c, k) <= 3)
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        bail!("treefile {}: unknown key `{k}`{hint}", path.display());
    }
    Ok(())
}

/// Loads `path`, then its includes, merging as rpm-ostree does: the included file is the
/// base; lists are concatenated (base first), maps are merged, and scalars of the including
/// file win.
///
/// `stack` holds the canonical paths of the files being included, to reject cycles. A file may
/// be included more than once (from two places), so the total is capped as well: without the
/// cap, a file including two others that each include two others... costs 2^depth loads.
/// `check` refuses keys we do not implement (off only for [`read_ref`]).
fn load_merged(
    path: &Path,
    files: &mut Vec<PathBuf>,
    stack: &mut Vec<PathBuf>,
    check: bool,
) -> Result<Obj> {
    if stack.len() > MAX_INCLUDE_DEPTH {
        bail!(
            "treefile {}: include nesting is deeper than {MAX_INCLUDE_DEPTH}",
            path.display()
        );
    }
    if files.len() >= MAX_INCLUDED_FILES {
        bail!(
            "treefile {}: more than {MAX_INCLUDED_FILES} files included in all",
            path.display()
        );
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(at) = stack.iter().position(|p| *p == canonical) {
        let chain: Vec<String> = stack[at..]
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| p.display().to_string())
            .collect();
        bail!("treefile include cycle: {}", chain.join(" -> "));
    }
    files.push(path.to_path_buf());
    stack.push(canonical);
    let obj = load_one(path, files, stack, check);
    stack.pop();
    obj
}

fn load_one(
    path: &Path,
    files: &mut Vec<PathBuf>,
    stack: &mut Vec<PathBuf>,
    check: bool,
) -> Result<Obj> {
    let mut obj = parse_file(path)?;
    if check {
        check_keys(&obj, path)?;
    }
    let includes: Vec<String> = match obj.remove("include") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(v) => serde_json::from_value(v).with_context(|| {
            format!(
                "treefile {}: include must be a file name or a list of them",
                path.display()
            )
        })?,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut base = Obj::new();
    for inc in includes {
        let inc_path = dir.join(&inc);
        if !inc_path.exists() {
            bail!(
                "treefile {}: include {inc:?} not found (looked for {})",
                path.display(),
                inc_path.display()
            );
        }
        let sub = load_merged(&inc_path, files, stack, check)?;
        merge_into(&mut base, sub);
    }
    merge_into(&mut base, obj);
    Ok(base)
}

fn merge_into(base: &mut Obj, over: Obj) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
            (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn include_merges_lists_and_overrides_scalars() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "base.yaml",
            "ref: base/ref\npackages: [a, b]\nunits: [x.service]\n",
        );
        let top = write(
            d.path(),
            "top.yaml",
            "include: base.yaml\nref: top/ref\npackages: [c d]\npackages-x86_64: [k]\n",
        );
        let tf = load(&top).unwrap();
        assert_eq!(tf.ostree_ref.as_deref(), Some("top/ref"));
        assert_eq!(tf.packages_for("x86_64"), ["a", "b", "c", "d", "k"]);
        assert_eq!(tf.packages_for("aarch64"), ["a", "b", "c", "d"]);
        assert_eq!(tf.units, ["x.service"]);
        assert_eq!(tf.files.len(), 2);
    }

    #[test]
    fn unknown_key_is_named_with_a_hint() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.yaml", "ref: a\npackagse: [a]\n");
        let e = format!("{:#}", load(&p).unwrap_err());
        assert!(e.contains("unknown key `packagse`"), "{e}");
        assert!(e.contains("did you mean `packages`"), "{e}");
    }

    #[test]
    fn unimplemented_key_says_so_unless_noop() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.yaml", "ref: a\npostprocess-script: x.sh\n");
        let e = format!("{:#}", load(&p).unwrap_err());
        assert!(
            e.contains("`postprocess-script`") && e.contains("does not implement"),
            "{e}"
        );
        let p = write(
            d.path(),
            "u.json",
            r#"{"ref": "a", "machineid-compat": false}"#,
        );
        load(&p).unwrap();
    }
}
