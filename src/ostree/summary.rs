//! The `summary` file (docs/ostree-formats.md §5), byte-identical to `ostree summary -u`.

use std::fs;

use anyhow::{Context as _, Result};
use serde_bytes::{ByteBuf, Bytes};

use super::checksum::Checksum;
use super::gvariant::{self, ADict, MetaValue, Metadata, OwnedADict, lookup};
use super::repo::{Repo, keyfile_get, keyfile_set, write_file_atomic, write_file_atomic_via};

/// Orders `a{sv}` entries the way a GVariantDict (a GHashTable keyed by `g_str_hash`) iterates
/// them, so our summary is byte-identical to libostree's. Later duplicates replace earlier
/// ones in place, as `g_variant_dict_insert_value` does.
pub fn ghash_order(entries: Metadata) -> Metadata {
    fn str_hash(s: &str) -> u32 {
        // g_str_hash: djb2 over *signed* chars.
        let mut h: u32 = 5381;
        for &b in s.as_bytes() {
            h = h.wrapping_mul(33).wrapping_add(b as i8 as i32 as u32);
        }
        h
    }
    // GLib's prime moduli by shift (g_hash_table's `prime_mod`).
    const PRIME_MOD: [u32; 12] = [1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039];
    struct Table {
        shift: usize,
        slots: Vec<Option<(u32, String, MetaValue)>>,
    }
    impl Table {
        fn new(shift: usize) -> Table {
            Table {
                shift,
                slots: vec![None; 1 << shift],
            }
        }
        fn find(&self, hash: u32, key: &str) -> usize {
            let mask = (1usize << self.shift) - 1;
            let mut idx = (hash.wrapping_mul(11) % PRIME_MOD[self.shift]) as usize;
            let mut step = 0;
            while let Some((h, k, _)) = &self.slots[idx] {
                if *h == hash && k == key {
                    return idx;
                }
                step += 1;
                idx = (idx + step) & mask;
            }
            idx
        }
    }
    let mut t = Table::new(3);
    let mut n = 0usize;
    for (k, v) in entries {
        let mut hash = str_hash(&k);
        if hash <= 1 {
            hash = 2;
        }
        let idx = t.find(hash, &k);
        let new = t.slots[idx].is_none();
        t.slots[idx] = Some((hash, k, v));
        if new {
            n += 1;
            let size = 1usize << t.shift;
            if size <= n + n / 16 {
                // g_hash_table_resize: shift from nnodes*2, re-insert in slot order.
                let mut shift = 3;
                while (1usize << shift) < n * 2 {
                    shift += 1;
                }
                let mut nt = Table::new(shift);
                for e in t.slots.into_iter().flatten() {
                    let i = nt.find(e.0, &e.1);
                    nt.slots[i] = Some(e);
                }
                t = nt;
            }
        }
    }
    t.slots
        .into_iter()
        .flatten()
        .map(|(_, k, v)| (k, v))
        .collect()
}

/// One ref in a summary: name, commit size, commit, per-ref metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRef {
    /// The ref name.
    pub name: String,
    /// Size in bytes of the commit object file.
    pub commit_size: u64,
    /// The commit the ref points to.
    pub commit: Checksum,
    /// Per-ref metadata such as `ostree.commit.timestamp` (big-endian) and `ostree.commit.version`.
    pub metadata: Metadata,
}

/// A parsed summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The refs, sorted by name.
    pub refs: Vec<SummaryRef>,
    /// Repository-wide metadata (`ostree.summary.*`, `ostree.static-deltas`, ...), in order.
    pub metadata: Metadata,
}

type RefWire<'a> = (&'a str, (u64, &'a Bytes, ADict<'a>));

/// Serializes a summary (refs must already be sorted; metadata is written in the given order).
pub fn summary_bytes(s: &Summary) -> Result<Vec<u8>> {
    let refs: Vec<RefWire<'_>> = s
        .refs
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                (
                    r.commit_size,
                    Bytes::new(r.commit.as_bytes()),
                    ADict(&r.metadata),
                ),
            )
        })
        .collect();
    gvariant::to_bytes(&(refs, ADict(&s.metadata)))
}

type SummaryWire = (Vec<(String, (u64, ByteBuf, OwnedADict))>, OwnedADict);

/// Parses a summary file.
pub fn parse_summary(bytes: &[u8]) -> Result<Summary> {
    let (refs, meta): SummaryWire = gvariant::from_bytes(bytes)?;
    let refs = refs
        .into_iter()
        .map(|(name, (size, c, md))| {
            Ok(SummaryRef {
                name,
                commit_size: size,
                commit: Checksum::from_slice(&c)?,
                metadata: md.0,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Summary {
        refs,
        metadata: meta.0,
    })
}

/// `ostree.summary.last-modified`: now, or `SOURCE_DATE_EPOCH` when set (so tests and
/// reproducible publishing can pin it; libostree itself always uses the clock).
fn last_modified() -> u64 {
    super::commit::default_timestamp()
}

impl Repo {
    /// Builds the summary `ostree summary -u` would write, without writing it.
    pub fn build_summary(&self, extra_metadata: &[(String, MetaValue)]) -> Result<Summary> {
        let mut refs = Vec::new();
        for (name, commit) in self.list_refs()? {
            let c = self
                .read_commit(&commit)
                .with_context(|| format!("reading ref '{name}'"))?;
            let mut md: Metadata = Vec::new();
            md.push((
                "ostree.commit.timestamp".into(),
                MetaValue::U64Be(c.timestamp),
            ));
            if let Some(MetaValue::Str(v)) = lookup(&c.metadata, "version") {
                md.push(("ostree.commit.version".into(), MetaValue::Str(v.clone())));
            }
            refs.push(SummaryRef {
                name,
                commit_size: self.commit_size(&commit)?,
                commit,
                metadata: ghash_order(md),
            });
        }
        let config = fs::read_to_string(self.path().join("config"))
            .with_context(|| format!("reading {}", self.path().join("config").display()))?;
        let tombstones =
            keyfile_get(&config, "core", "tombstone-commits").is_some_and(|v| v == "true");
        let mut md: Metadata = extra_metadata.to_vec();
        md.push((
            "ostree.summary.last-modified".into(),
            MetaValue::U64Be(last_modified()),
        ));
        md.push((
            "ostree.summary.mode".into(),
            MetaValue::Str(self.mode().as_str().into()),
        ));
        md.push((
            "ostree.summary.tombstone-commits".into(),
            MetaValue::Bool(tombstones),
        ));
        md.push((
            "ostree.summary.indexed-deltas".into(),
            MetaValue::Bool(true),
        ));
        if keyfile_get(&config, "core", "no-deltas-in-summary").as_deref() != Some("true") {
            let deltas = self.static_delta_digests()?;
            if !deltas.is_empty() {
                md.push((
                    "ostree.static-deltas".into(),
                    MetaValue::Dict(ghash_order(deltas)),
                ));
            }
        }
        if let Some(cid) = self.collection_id() {
            md.push((
                "ostree.summary.collection-id".into(),
                MetaValue::Str(cid.into()),
            ));
        }
        Ok(Summary {
            refs,
            metadata: ghash_order(md),
        })
    }

    /// Regenerates `summary` exactly as `ostree summary -u` does: sets `indexed-deltas=true`
    /// in config, writes the summary atomically and removes the now stale `summary.sig`.
    pub fn update_summary(&self, extra_metadata: &[(String, MetaValue)]) -> Result<()> {
        let _lock = self.lock()?;
        let config_path = self.path().join("config");
        let config = fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        if keyfile_get(&config, "core", "indexed-deltas").as_deref() != Some("true") {
            let new = keyfile_set(&config, "core", "indexed-deltas", "true");
            write_file_atomic(&config_path, new.as_bytes(), 0o644)?;
        }
        let summary = self.build_summary(extra_metadata)?;
        self.reindex_static_deltas()?;
        let bytes = summary_bytes(&summary)?;
        write_file_atomic_via(
            &self.path().join("tmp"),
            &self.path().join("summary"),
            &bytes,
            0o644,
        )?;
        let sig = self.path().join("summary.sig");
        match fs::remove_file(&sig) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing stale {}", sig.display())),
        }
        Ok(())
    }

    /// Every delta's name (`FROM-TO` or `TO`) and the sha256 of its superblock, as the
    /// summary and the delta indexes list them.
    fn static_delta_digests(&self) -> Result<Metadata> {
        self.list_static_deltas()?
            .into_iter()
            .map(|n| {
                let p = self.path().join(n.superblock_rel());
                let b = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                Ok((n.id(), MetaValue::Bytes(Checksum::of(&b).0.to_vec())))
            })
            .collect()
    }

    /// Rewrites `delta-indexes/` as `ostree summary -u` does (`ostree_repo_static_delta_reindex`):
    /// one `a{sv}` per target commit, `{'ostree.static-deltas': {NAME: <superblock sha256>}}`,
    /// and removes the index of any target that no longer has a delta.
    pub fn reindex_static_deltas(&self) -> Result<()> {
        use std::collections::BTreeMap;
        let mut by_to: BTreeMap<Checksum, Metadata> = BTreeMap::new();
        for (id, digest) in self.static_delta_digests()? {
            let to = id.rsplit('-').next().unwrap_or(&id).parse::<Checksum>()?;
            by_to.entry(to).or_default().push((id, digest));
        }
        let root = self.path().join("delta-indexes");
        // Stale indexes: every existing index whose target has no delta now.
        if let Ok(rd) = fs::read_dir(&root) {
            for d in rd.flatten() {
                let prefix = d.file_name().to_string_lossy().into_owned();
                let Ok(sub) = fs::read_dir(d.path()) else {
                    continue;
                };
                for f in sub.flatten() {
                    let n = f.file_name().to_string_lossy().into_owned();
                    let Some(rest) = n.strip_suffix(".index") else {
                        continue;
                    };
                    let keep = super::delta::from_b64(&format!("{prefix}{rest}"))
                        .is_ok_and(|c| by_to.contains_key(&c));
                    if !keep {
                        fs::remove_file(f.path())
                            .with_context(|| format!("removing {}", f.path().display()))?;
                    }
                }
            }
        }
        for (to, mut froms) in by_to {
            // ostree inserts the from-scratch delta first, then by FROM.
            froms.sort_by_key(|(id, _)| (id.contains('-'), id.clone()));
            let index: Metadata = vec![(
                "ostree.static-deltas".into(),
                MetaValue::Dict(ghash_order(froms)),
            )];
            let bytes = gvariant::to_bytes(&ADict(&index))?;
            let path = self.path().join(super::delta::index_rel(&to));
            if fs::read(&path).is_ok_and(|old| old == bytes) {
                continue;
            }
            let dir = path.parent().expect("index paths have a parent");
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_file_atomic_via(&self.path().join("tmp"), &path, &bytes, 0o644)?;
        }
        Ok(())
    }

    /// Reads and parses the repository's `summary`.
    pub fn read_summary(&self) -> Result<Summary> {
        let p = self.path().join("summary");
        let b = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        parse_summary(&b).with_context(|| format!("parsing {}", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_order_matches_documented_glib_order() {
        let keys = |m: Metadata| m.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let top = vec![
            (
                "ostree.summary.last-modified".to_string(),
                MetaValue::U64Be(1),
            ),
            (
                "ostree.summary.mode".to_string(),
                MetaValue::Str("archive-z2".into()),
            ),
            (
                "ostree.summary.tombstone-commits".to_string(),
                MetaValue::Bool(false),
            ),
            (
                "ostree.summary.indexed-deltas".to_string(),
                MetaValue::Bool(true),
            ),
        ];
        assert_eq!(
            keys(ghash_order(top)),
            [
                "ostree.summary.mode",
                "ostree.summary.last-modified",
                "ostree.summary.tombstone-commits",
                "ostree.summary.indexed-deltas"
            ]
        );
        let per_ref = vec![
            ("ostree.commit.timestamp".to_string(), MetaValue::U64Be(1)),
            (
                "ostree.commit.version".to_string(),
                MetaValue::Str("1".into()),
            ),
        ];
        assert_eq!(
            keys(ghash_order(per_ref)),
            ["ostree.commit.version", "ostree.commit.timestamp"]
        );
    }
}
