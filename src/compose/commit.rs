//! The composed tree written as ostree objects and its commit: the dirtree/dirmeta walk of
//! the model, the commit metadata rpm-ostree writes (`rpmostree.inputhash`, the package
//! list, `version`, `ostree.bootable`/`ostree.linux`) and its automatic versions.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, anyhow, bail};

use super::import::Imported;
use super::model::{Header, Model, Node, S_IFDIR, S_IFLNK};
use super::treefile::Treefile;
use crate::ostree::{Checksum, DirMeta, FileMeta, MetaValue, Metadata, MutableTree, Repo};

/// What goes into the commit metadata besides the treefile's and the caller's own keys.
pub struct CommitFacts<'a> {
    /// The input hash, stored as `rpmostree.inputhash` (compared on the next compose).
    pub inputhash: &'a str,
    /// The installed packages, recorded as `rpmostree.rpmdb.pkglist`.
    pub headers: &'a [Header],
    /// Scriptlets not run, recorded as `atomic-factory.skipped-scriptlets`.
    pub skipped_scriptlets: &'a [String],
    /// The commit's `version`, when it has one.
    pub version: Option<&'a str>,
    /// The kernel version, when the tree has one (it is then bootable).
    pub kernel: Option<&'a str>,
}

/// The commit metadata, keys sorted for determinism: the treefile's `add-commit-metadata`,
/// then `extra` strings (`--add-metadata-string`), then what the compose itself records.
pub fn metadata(
    tf: &Treefile,
    extra: &[(String, String)],
    facts: &CommitFacts<'_>,
) -> Result<Metadata> {
    let mut md: BTreeMap<String, MetaValue> = BTreeMap::new();
    for (k, v) in &tf.add_commit_metadata {
        md.insert(k.clone(), json_to_meta(k, v)?);
    }
    for (k, v) in extra {
        md.insert(k.clone(), MetaValue::Str(v.clone()));
    }
    md.insert(
        "rpmostree.inputhash".into(),
        MetaValue::Str(facts.inputhash.to_string()),
    );
    md.insert(
        "rpmostree.rpmdb.pkglist".into(),
        MetaValue::PkgList(
            facts
                .headers
                .iter()
                .map(|h| {
                    let e = &h.info.evr;
                    let epoch = if e.epoch.is_empty() {
                        "0".to_string()
                    } else {
                        e.epoch.clone()
                    };
                    (
                        h.info.name.clone(),
                        epoch,
                        e.version.clone(),
                        e.release.clone(),
                        h.info.arch.clone(),
                    )
                })
                .collect(),
        ),
    );
    md.insert(
        "atomic-factory.skipped-scriptlets".into(),
        MetaValue::StrList(facts.skipped_scriptlets.to_vec()),
    );
    if let Some(v) = facts.version {
        md.insert("version".into(), MetaValue::Str(v.to_string()));
    }
    if let Some(k) = facts.kernel {
        md.insert("ostree.bootable".into(), MetaValue::Bool(true));
        md.insert("ostree.linux".into(), MetaValue::Str(k.to_string()));
    }
    Ok(md.into_iter().collect())
}

fn json_to_meta(k: &str, v: &serde_json::Value) -> Result<MetaValue> {
    use serde_json::Value as V;
    Ok(match v {
        V::String(s) => MetaValue::Str(s.clone()),
        V::Bool(b) => MetaValue::Bool(*b),
        // rpm-ostree byte-swaps its compose metadata to big-endian.
        V::Number(n) if n.as_u64().is_some() => MetaValue::U64Be(n.as_u64().unwrap()),
        V::Array(a) if a.iter().all(|x| x.is_string()) => MetaValue::StrList(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
        ),
        _ => bail!(
            "add-commit-metadata: value of {k:?} must be a string, bool, unsigned number or list of strings"
        ),
    })
}

/// Writes the model as dirtree and dirmeta objects (the files are already imported);
/// returns the root dirtree and dirmeta checksums.
pub fn write_tree(
    repo: &Repo,
    model: &Model,
    imported: &Imported,
    uids: &BTreeMap<String, u32>,
    gids: &BTreeMap<String, u32>,
) -> Result<(Checksum, Checksum)> {
    let mut dirmetas: HashMap<(u32, u32, u32), Checksum> = HashMap::new();
    let mut dirmeta = |uid: u32, gid: u32, mode: u32| -> Result<Checksum> {
        if let Some(c) = dirmetas.get(&(uid, gid, mode)) {
            return Ok(*c);
        }
        let c = repo.write_dirmeta(&DirMeta {
            uid,
            gid,
            mode,
            xattrs: vec![],
        })?;
        dirmetas.insert((uid, gid, mode), c);
        Ok(c)
    };
    let default = dirmeta(0, 0, S_IFDIR | 0o755)?;
    let mut root = MutableTree::new(default);
    for (path, ent) in &model.entries {
        let comps: Vec<&str> = path.split('/').collect();
        let (name, parents) = comps.split_last().expect("paths are not empty");
        let uid = uids.get(&ent.user).copied().unwrap_or(0);
        let gid = gids.get(&ent.group).copied().unwrap_or(0);
        let ctx = || format!("adding /{path} to the tree");
        match &ent.node {
            Node::Dir => {
                let m = dirmeta(uid, gid, ent.mode)?;
                root.ensure_dir(&comps, &default)
                    .with_context(ctx)?
                    .metadata = m;
            }
            node => {
                let csum = match node {
                    Node::File { .. } => *imported
                        .get(path)
                        .ok_or_else(|| anyhow!("internal error: /{path} was not imported"))?,
                    Node::Symlink { target } => repo
                        .write_symlink(
                            &FileMeta {
                                uid,
                                gid,
                                mode: S_IFLNK | 0o777,
                                xattrs: vec![],
                            },
                            target,
                        )
                        .with_context(ctx)?,
                    Node::Generated { data } => repo
                        .write_file(
                            &FileMeta {
                                uid,
                                gid,
                                mode: ent.mode,
                                xattrs: vec![],
                            },
                            data.len() as u64,
                            &mut &data[..],
                        )
                        .with_context(ctx)?,
                    Node::Dir => unreachable!(),
                };
                let parent = root.ensure_dir(parents, &default).with_context(ctx)?;
                if parent.dirs.contains_key(*name) {
                    bail!("/{path}: a file and a directory of that name are both in the tree");
                }
                parent.files.insert((*name).to_string(), csum);
            }
        }
    }
    repo.write_mtree(&root)
}

/// rpm-ostree's `automatic-version-prefix`: PREFIX, then PREFIX.1, PREFIX.2, ... following
/// the previous commit's version. `<date:%Y%m%d>` is expanded from the commit timestamp.
pub fn next_version(prefix: &str, previous: Option<&str>, timestamp: u64) -> String {
    let prefix = expand_date(prefix, timestamp);
    match previous {
        Some(prev) if prev == prefix => format!("{prefix}.1"),
        Some(prev) => match prev
            .strip_prefix(&format!("{prefix}."))
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => format!("{prefix}.{}", n + 1),
            None => prefix,
        },
        None => prefix,
    }
}

fn expand_date(s: &str, ts: u64) -> String {
    let Some(start) = s.find("<date:") else {
        return s.to_string();
    };
    let Some(end) = s[start..].find('>') else {
        return s.to_string();
    };
    let fmt = &s[start + 6..start + end];
    let (y, m, d) = civil_from_days((ts / 86400) as i64);
    let out = fmt
        .replace("%Y", &format!("{y:04}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"));
    format!("{}{}{}", &s[..start], out, &s[start + end + 1..])
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm; too small for a crate).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_rpm_ostree() {
        assert_eq!(next_version("39", None, 0), "39");
        assert_eq!(next_version("39", Some("39"), 0), "39.1");
        assert_eq!(next_version("39", Some("39.4"), 0), "39.5");
        assert_eq!(next_version("40", Some("39.4"), 0), "40");
        assert_eq!(
            next_version("<date:%Y%m%d>", None, 1_700_000_000),
            "20231114"
        );
    }

    #[test]
    fn treefile_metadata_values_keep_rpm_ostree_types() {
        use serde_json::json;
        assert_eq!(
            json_to_meta("k", &json!("x")).unwrap(),
            MetaValue::Str("x".into())
        );
        assert_eq!(
            json_to_meta("k", &json!(true)).unwrap(),
            MetaValue::Bool(true)
        );
        // rpm-ostree writes numbers big-endian.
        assert_eq!(json_to_meta("k", &json!(3)).unwrap(), MetaValue::U64Be(3));
        assert_eq!(
            json_to_meta("k", &json!(["a", "b"])).unwrap(),
            MetaValue::StrList(vec!["a".into(), "b".into()])
        );
        for bad in [json!(-1), json!(1.5), json!({"a": 1}), json!(["a", 1])] {
            let e = json_to_meta("key", &bad).unwrap_err().to_string();
            assert!(e.contains("value of \"key\""), "{bad}: {e}");
        }
    }
}
