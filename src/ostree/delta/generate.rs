//! `static-delta generate`: the objects of TO that FROM lacks, packed into lzma-compressed
//! parts of bytecode (open-splice-and-close for new objects, bspatch for modified files where
//! the patch is smaller), large objects left as fallbacks, and the superblock written last.
//!
//! Part boundaries are planned serially (as ostree does, by uncompressed payload size); the
//! parts are then read, encoded and compressed in parallel, which is where the time goes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};
use rayon::prelude::*;

use super::bytecode::{self, put_varint};
use super::format::{
    DeltaName, Fallback, PART_VERSION, PartHeader, PartPayload, Superblock, part_payload_bytes,
    superblock_bytes,
};
use super::matcher::{self, Span};
use crate::ostree::checksum::Checksum;
use crate::ostree::objects::{self, ObjectType};
use crate::ostree::repo::{Repo, write_file_atomic, write_file_atomic_via};
use crate::ostree::traverse::{self, ObjectName};

/// How parts are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// xz (lzma preset 8, CRC64), like ostree: part byte `'x'`.
    Lzma,
    /// Uncompressed: part byte 0.
    None,
}

/// Options of one delta, with ostree's defaults from [`GenerateOptions::new`].
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// The commit to start from; None for a from-scratch (`--empty`) delta.
    pub from: Option<Checksum>,
    /// The commit the delta produces.
    pub to: Checksum,
    /// Put the parts inside the superblock (one self-contained file).
    pub inline: bool,
    /// Regular files larger than this many bytes become fallbacks; 0 disables fallbacks.
    pub min_fallback_size: u64,
    /// Start a new part once a part's payload would exceed this many bytes.
    pub max_chunk_size: u64,
    /// How the part files are compressed.
    pub compression: Compression,
    /// bsdiff modified files that exact matches do not cover.
    pub bsdiff: bool,
    /// Modified files whose old + new size exceed this are sent whole: neither matched nor
    /// bsdiff'ed (both hold the two files in memory).
    pub max_bsdiff_size: u64,
    /// Write the superblock here (parts beside it) instead of into the repository.
    pub filename: Option<PathBuf>,
    /// Do nothing when the delta already exists.
    pub if_not_exists: bool,
}

impl GenerateOptions {
    /// ostree's defaults: fallbacks above 4 MB, 32 MB parts, bsdiff up to 128 MB, lzma.
    pub fn new(from: Option<Checksum>, to: Checksum) -> GenerateOptions {
        GenerateOptions {
            from,
            to,
            inline: false,
            min_fallback_size: 4_000_000,
            max_chunk_size: 32_000_000,
            compression: Compression::Lzma,
            bsdiff: true,
            max_bsdiff_size: 128_000_000,
            filename: None,
            if_not_exists: false,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct GenerateReport {
    /// The delta's endpoints (None only in a default report).
    pub name: Option<DeltaName>,
    /// True when `if_not_exists` found the delta already there.
    pub existed: bool,
    /// Number of parts written.
    pub parts: usize,
    /// Number of objects the parts create.
    pub objects: usize,
    /// Number of objects left to the client to fetch (fallbacks).
    pub fallbacks: usize,
    /// Number of modified files sent as bsdiff patches.
    pub bsdiffs: usize,
    /// Modified files sent as copies from their old object plus the changed bytes.
    pub copied: usize,
    /// Sum of part sizes.
    pub part_bytes: u64,
    /// Sum of the objects' uncompressed sizes in parts.
    pub part_ubytes: u64,
    /// Size of the superblock file (inline parts included).
    pub superblock_bytes: u64,
}

/// One object to put in a part.
#[derive(Clone, Debug)]
enum Item {
    Meta(Checksum, ObjectType, u64),
    /// A regular file or symlink written whole; the size is what goes into the payload.
    Content(Checksum, u64),
    /// A regular file patched from an object of FROM.
    Modified {
        to: Checksum,
        from: Checksum,
        size: u64,
    },
}

impl Item {
    fn size(&self) -> u64 {
        match self {
            Item::Meta(_, _, s) | Item::Content(_, s) | Item::Modified { size: s, .. } => *s,
        }
    }
}

/// Regular-file info of a commit's tree: checksum → (size, basenames).
type SizeNames = HashMap<Checksum, (u64, Vec<String>)>;

fn regfile_sizenames(
    repo: &Repo,
    commit: &Checksum,
    only: Option<&HashSet<Checksum>>,
) -> Result<SizeNames> {
    let c = repo.read_commit(commit)?;
    let mut names: HashMap<Checksum, Vec<String>> = HashMap::new();
    let mut stack = vec![c.root_dirtree];
    let mut seen = HashSet::new();
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        let tree = repo.read_dirtree(&t)?;
        for (name, f) in tree.files {
            if only.is_none_or(|o| o.contains(&f)) {
                names.entry(f).or_default().push(name);
            }
        }
        stack.extend(tree.dirs.into_iter().map(|(_, t, _)| t));
    }
    let infos: Vec<(Checksum, Option<u64>)> = names
        .keys()
        .copied()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|c| -> Result<(Checksum, Option<u64>)> {
            let (_, target, size) = repo.read_file_info(&c)?;
            Ok((c, target.is_none().then_some(size)))
        })
        .collect::<Result<_>>()?;
    Ok(infos
        .into_iter()
        .filter_map(|(c, s)| s.map(|s| (c, (s, names.remove(&c).unwrap_or_default()))))
        .collect())
}

/// Files that cannot shrink by diffing (`sizename_is_delta_candidate`): empty or xz/bz2.
fn delta_candidate(size: u64, names: &[String]) -> bool {
    size > 0
        && !names
            .iter()
            .any(|n| n.ends_with(".xz") || n.ends_with(".bz2"))
}

/// For each new regular file, an old file with the same basename (or, failing that, the
/// same name before the first '.') within ±30% of its size, like
/// `_ostree_delta_compute_similar_objects`.
fn similar_objects(from: &SizeNames, to: &SizeNames) -> HashMap<Checksum, Checksum> {
    let mut by_name: HashMap<&str, Vec<(u64, Checksum)>> = HashMap::new();
    let mut by_stem: HashMap<&str, Vec<(u64, Checksum)>> = HashMap::new();
    for (c, (size, names)) in from {
        if !delta_candidate(*size, names) {
            continue;
        }
        for n in names {
            by_name.entry(n).or_default().push((*size, *c));
            if let Some((stem, _)) = n.split_once('.')
                && !stem.is_empty()
            {
                by_stem.entry(stem).or_default().push((*size, *c));
            }
        }
    }
    for v in by_name.values_mut().chain(by_stem.values_mut()) {
        v.sort();
    }
    let mut out = HashMap::new();
    for (c, (size, names)) in to {
        if !delta_candidate(*size, names) {
            continue;
        }
        let lo = (*size as f64 * 0.7) as u64;
        let hi = (*size as f64 * 1.3) as u64;
        let pick = |map: &HashMap<&str, Vec<(u64, Checksum)>>, key: &str| {
            map.get(key)
                .and_then(|v| v.iter().find(|(s, _)| *s >= lo && *s <= hi).map(|x| x.1))
        };
        let found = names.iter().find_map(|n| pick(&by_name, n)).or_else(|| {
            names.iter().find_map(|n| {
                n.split_once('.')
                    .filter(|(s, _)| !s.is_empty())
                    .and_then(|(s, _)| pick(&by_stem, s))
            })
        });
        if let Some(f) = found {
            out.insert(*c, f);
        }
    }
    out
}

/// Generates a delta into the repository (or `opts.filename`).
pub fn generate(repo: &Repo, opts: &GenerateOptions) -> Result<GenerateReport> {
    let name = DeltaName {
        from: opts.from,
        to: opts.to,
    };
    let sb_path = match &opts.filename {
        Some(f) => f.clone(),
        None => repo.path().join(name.superblock_rel()),
    };
    if opts.if_not_exists && sb_path.exists() {
        return Ok(GenerateReport {
            name: Some(name),
            existed: true,
            ..Default::default()
        });
    }
    ensure!(
        opts.from != Some(opts.to),
        "cannot make a delta from {} to itself",
        opts.to
    );
    let commit_bytes = fs::read(repo.object_path(&opts.to, ObjectType::Commit))
        .with_context(|| format!("reading target commit {}", opts.to))?;
    objects::parse_commit(&commit_bytes)
        .with_context(|| format!("parsing target commit {}", opts.to))?;

    // What TO has that FROM lacks (the TO commit itself travels in the superblock).
    let mut new_objects = traverse::reachable(repo, &opts.to)?;
    if let Some(from) = &opts.from {
        ensure!(
            repo.has_object(from, ObjectType::Commit),
            "source commit {from} is not in {}",
            repo.path().display()
        );
        let old = traverse::reachable(repo, from)?;
        new_objects.retain(|o| !old.contains(o));
    }
    new_objects.remove(&(opts.to, ObjectType::Commit));

    let mut meta: Vec<(Checksum, ObjectType)> = Vec::new();
    let mut content: Vec<Checksum> = Vec::new();
    for (c, t) in new_objects {
        if t == ObjectType::File {
            content.push(c);
        } else {
            meta.push((c, t));
        }
    }
    // Dirmetas, then dirtrees children-first with the root last (see `write order` below).
    let rank: HashMap<Checksum, usize> = dirtrees_post_order(repo, &opts.to)?
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    meta.sort_by_key(|(c, t)| (*t == ObjectType::DirTree, rank.get(c).copied(), *c));
    content.sort();

    // Content sizes and kinds, read from the headers in parallel.
    let infos: Vec<(Checksum, bool, u64, u64)> = content
        .par_iter()
        .map(|c| -> Result<(Checksum, bool, u64, u64)> {
            let (_, target, size) = repo.read_file_info(c)?;
            let disk = fs::metadata(repo.object_path(c, ObjectType::File))?.len();
            Ok(match target {
                Some(t) => (*c, true, t.len() as u64, disk),
                None => (*c, false, size, disk),
            })
        })
        .collect::<Result<_>>()?;

    // Modified files are matched whether or not bsdiff is allowed (ostree's
    // --disable-bsdiff keeps its rollsum pass too).
    let modified = match &opts.from {
        Some(from) => {
            let new_reg: HashSet<Checksum> = infos
                .iter()
                .filter(|(_, link, _, _)| !link)
                .map(|x| x.0)
                .collect();
            let from_sn = regfile_sizenames(repo, from, None)?;
            let to_sn = regfile_sizenames(repo, &opts.to, Some(&new_reg))?;
            let mut m = similar_objects(&from_sn, &to_sn);
            m.retain(|to, from| from_sn[from].0 + to_sn[to].0 <= opts.max_bsdiff_size);
            m
        }
        None => HashMap::new(),
    };

    // Write order: modified files, new files, symlinks, then metadata with the root dirtree
    // last. ostree puts metadata first, but the pulling client scans the new commit while
    // the part is still being applied: once a dirtree exists it fetches any file it lists
    // that is not there yet as a loose object. With content first, every dirtree the client
    // can see already has its files.
    let mut items: Vec<Item> = Vec::new();
    let mut fallbacks = Vec::new();
    let mut regular = Vec::new();
    let mut links = Vec::new();
    for (c, link, size, disk) in &infos {
        if *link {
            links.push(Item::Content(*c, *size));
        } else if let Some(from) = modified.get(c) {
            items.push(Item::Modified {
                to: *c,
                from: *from,
                size: *size,
            });
        } else if opts.min_fallback_size > 0 && *size > opts.min_fallback_size {
            fallbacks.push(Fallback {
                object: (*c, ObjectType::File),
                size: *disk,
                usize: *size,
            });
        } else {
            regular.push(Item::Content(*c, *size));
        }
    }
    items.extend(regular);
    items.extend(links);
    for (c, t) in &meta {
        let size = fs::metadata(repo.object_path(c, *t))
            .with_context(|| format!("reading {} object {c}", t.extension()))?
            .len();
        items.push(Item::Meta(*c, *t, size));
    }

    // Plan part boundaries by uncompressed size.
    let mut plan: Vec<Vec<Item>> = vec![Vec::new()];
    let mut cur = 0u64;
    for it in items {
        let last = plan.last_mut().expect("one part");
        if !last.is_empty() && cur + it.size() > opts.max_chunk_size {
            plan.push(Vec::new());
            cur = 0;
        }
        cur += it.size();
        plan.last_mut().expect("one part").push(it);
    }

    let built: Vec<(Vec<u8>, PartHeader, PatchCounts)> = plan
        .par_iter()
        .map(|items| build_part(repo, items, opts.compression, opts.bsdiff))
        .collect::<Result<_>>()?;

    // Write the parts, then the superblock: a reader never sees a superblock whose parts
    // are missing.
    let dir = sb_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let in_repo = opts.filename.is_none();
    let write = |dest: &Path, data: &[u8]| -> Result<()> {
        if in_repo {
            write_file_atomic_via(&repo.path().join("tmp"), dest, data, 0o644)
        } else {
            write_file_atomic(dest, data, 0o644)
        }
    };
    let mut metadata: Vec<(String, Vec<u8>, String)> =
        vec![("ostree.endianness".into(), vec![b'l'], "y".into())];
    let mut report = GenerateReport {
        name: Some(name),
        parts: built.len(),
        fallbacks: fallbacks.len(),
        ..Default::default()
    };
    let mut headers = Vec::with_capacity(built.len());
    for (i, (bytes, header, counts)) in built.into_iter().enumerate() {
        report.objects += header.objects.len();
        report.bsdiffs += counts.bsdiffs;
        report.copied += counts.copies;
        report.part_bytes += header.size;
        report.part_ubytes += header.usize;
        if opts.inline {
            metadata.push((name.part_rel(i), bytes, "(yay)".into()));
        } else {
            write(&dir.join(i.to_string()), &bytes)?;
        }
        headers.push(header);
    }
    let detached = repo.object_path(&opts.to, ObjectType::CommitMeta);
    if detached.exists() {
        let d = fs::read(&detached).with_context(|| format!("reading {}", detached.display()))?;
        metadata.push((format!("{}/commitmeta", name.rel_dir()), d, "a{sv}".into()));
    }
    let sb = Superblock {
        metadata,
        timestamp: crate::ostree::commit::default_timestamp(),
        from: opts.from,
        to: opts.to,
        commit: commit_bytes,
        parts: headers,
        fallbacks,
        big_endian: false,
        signed: false,
    };
    let sb_bytes = superblock_bytes(&sb);
    report.superblock_bytes = sb_bytes.len() as u64;
    write(&sb_path, &sb_bytes)?;
    if in_repo {
        // Parts of an earlier, larger delta of the same name are stale now.
        let keep = if opts.inline { 0 } else { report.parts };
        for e in fs::read_dir(&dir)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.parse::<usize>().is_ok_and(|i| i >= keep) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(report)
}

/// The commit's dirtrees, each once, children before parents (the root last).
fn dirtrees_post_order(repo: &Repo, commit: &Checksum) -> Result<Vec<Checksum>> {
    let root = repo.read_commit(commit)?.root_dirtree;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // (tree, children pushed?) — an explicit stack, trees can be deep.
    let mut stack = vec![(root, false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            out.push(t);
            continue;
        }
        if !seen.insert(t) {
            continue;
        }
        stack.push((t, true));
        for (_, sub, _) in repo.read_dirtree(&t)?.dirs {
            if !seen.contains(&sub) {
                stack.push((sub, false));
            }
        }
    }
    Ok(out)
}

/// Interns a value, returning its index (ostree's `write_unique_variant_chunk`).
fn intern<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, usize>,
    list: &mut Vec<K>,
    k: K,
) -> usize {
    *map.entry(k.clone()).or_insert_with(|| {
        list.push(k);
        list.len() - 1
    })
}

/// Reads a regular file's data into memory.
fn read_content(repo: &Repo, c: &Checksum) -> Result<(objects::FileMeta, Option<String>, Vec<u8>)> {
    let (meta, target, mut r) = repo.read_file(c)?;
    let mut data = Vec::new();
    r.read_to_end(&mut data)
        .with_context(|| format!("inflating content object {c}"))?;
    Ok((meta, target, data))
}

/// How a modified file travels: as copies from the client's old object plus the changed
/// bytes (ostree's rollsum form), or as a bsdiff patch against it.
enum Patch {
    Copies(Checksum, Vec<Span>),
    Bsdiff(Checksum, Vec<u8>),
}

/// One object, read (and diffed) ready to be appended to a part.
enum Encoded {
    Meta(ObjectName, Vec<u8>),
    Content {
        csum: Checksum,
        mode: (u32, u32, u32),
        xattrs: Vec<u8>,
        /// The file data or symlink target.
        bytes: Vec<u8>,
        /// How to build it from an old object, when that is worth it.
        patch: Option<Patch>,
    },
}

/// Reads an item and, for a modified file, finds how to build it from the old one; the
/// slow part of a delta, so it runs in parallel over all items of a part.
fn encode_item(repo: &Repo, it: &Item, bsdiff: bool) -> Result<Encoded> {
    match it {
        Item::Meta(c, t, _) => {
            let b = fs::read(repo.object_path(c, *t))
                .with_context(|| format!("reading {} object {c}", t.extension()))?;
            Ok(Encoded::Meta((*c, *t), b))
        }
        Item::Content(c, _) | Item::Modified { to: c, .. } => {
            let (meta, target, data) = read_content(repo, c)?;
            let patch = match (it, &target) {
                (Item::Modified { from, .. }, None) => {
                    let (_, _, old) = read_content(repo, from)?;
                    diff_against(from, &old, c, &data, bsdiff)?
                }
                _ => None,
            };
            Ok(Encoded::Content {
                csum: *c,
                mode: (meta.uid, meta.gid, meta.mode),
                xattrs: objects::xattrs_bytes(&meta.xattrs)?,
                bytes: match target {
                    Some(t) => t.into_bytes(),
                    None => data,
                },
                patch,
            })
        }
    }
}

/// ostree's order of attempts: exact matches when they cover at least half of the new file
/// (its rollsum threshold), else bsdiff when allowed, kept only where it saves bytes.
fn diff_against(
    from: &Checksum,
    old: &[u8],
    to: &Checksum,
    new: &[u8],
    bsdiff: bool,
) -> Result<Option<Patch>> {
    let m = matcher::find_matches(old, new);
    if m.copied * 2 >= new.len() as u64 {
        return Ok(Some(Patch::Copies(*from, m.spans)));
    }
    if !bsdiff {
        return Ok(None);
    }
    let mut patch = Vec::new();
    bsdiff::diff(old, new, &mut patch).with_context(|| format!("bsdiff {from} -> {to}"))?;
    // The patch's zero bytes (unchanged stretches) compress to nearly nothing, the others
    // do not.
    let literal = patch.iter().filter(|&&b| b != 0).count();
    Ok((literal < new.len()).then_some(Patch::Bsdiff(*from, patch)))
}

/// A file rebuilt from spans, as ostree's `process_one_rollsum` writes it: open; then per
/// span a `write` from the read source (copies) or from the payload (literal bytes), the
/// read source set and unset as the kind of span changes; close.
fn push_copies(
    p: &mut PartPayload,
    (mode, xattrs): (usize, usize),
    from: &Checksum,
    bytes: &[u8],
    spans: &[Span],
) {
    let source = p.payload.len() as u64;
    p.payload.extend_from_slice(from.as_bytes());
    p.ops.push(bytecode::OPEN);
    put_varint(&mut p.ops, mode as u64);
    put_varint(&mut p.ops, xattrs as u64);
    put_varint(&mut p.ops, bytes.len() as u64);
    let mut reading_source = false;
    for span in spans {
        match *span {
            Span::Copy { from, len } => {
                if !reading_source {
                    p.ops.push(bytecode::SET_READ_SOURCE);
                    put_varint(&mut p.ops, source);
                    reading_source = true;
                }
                p.ops.push(bytecode::WRITE);
                put_varint(&mut p.ops, len);
                put_varint(&mut p.ops, from);
            }
            Span::Literal { start, len } => {
                if reading_source {
                    p.ops.push(bytecode::UNSET_READ_SOURCE);
                    reading_source = false;
                }
                p.ops.push(bytecode::WRITE);
                put_varint(&mut p.ops, len);
                put_varint(&mut p.ops, p.payload.len() as u64);
                p.payload
                    .extend_from_slice(&bytes[start as usize..(start + len) as usize]);
            }
        }
    }
    if reading_source {
        p.ops.push(bytecode::UNSET_READ_SOURCE);
    }
    p.ops.push(bytecode::CLOSE);
}

/// Modified files of a part, by how they travel.
#[derive(Clone, Copy, Debug, Default)]
struct PatchCounts {
    bsdiffs: usize,
    copies: usize,
}

/// Encodes and compresses one part: (part file bytes, its header, its patch counts).
fn build_part(
    repo: &Repo,
    items: &[Item],
    compression: Compression,
    bsdiff: bool,
) -> Result<(Vec<u8>, PartHeader, PatchCounts)> {
    let encoded: Vec<Encoded> = items
        .par_iter()
        .map(|it| encode_item(repo, it, bsdiff))
        .collect::<Result<_>>()?;
    let mut p = PartPayload::default();
    let mut modes: HashMap<(u32, u32, u32), usize> = HashMap::new();
    let mut xattrs: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut objects_list = Vec::with_capacity(items.len());
    let mut usize_total = 0u64;
    let mut counts = PatchCounts::default();
    for e in encoded {
        match e {
            Encoded::Meta(name, b) => {
                p.ops.push(bytecode::OPEN_SPLICE_AND_CLOSE);
                put_varint(&mut p.ops, b.len() as u64);
                put_varint(&mut p.ops, p.payload.len() as u64);
                usize_total += b.len() as u64;
                p.payload.extend_from_slice(&b);
                objects_list.push(name);
            }
            Encoded::Content {
                csum,
                mode,
                xattrs: x,
                bytes,
                patch,
            } => {
                let m = intern(&mut modes, &mut p.modes, mode);
                let x = intern(&mut xattrs, &mut p.xattrs, x);
                usize_total += bytes.len() as u64;
                match patch {
                    Some(Patch::Bsdiff(from, patch)) => {
                        // set-read-source FROM; open; bspatch; close; unset-read-source.
                        p.ops.push(bytecode::SET_READ_SOURCE);
                        put_varint(&mut p.ops, p.payload.len() as u64);
                        p.payload.extend_from_slice(from.as_bytes());
                        p.ops.push(bytecode::OPEN);
                        put_varint(&mut p.ops, m as u64);
                        put_varint(&mut p.ops, x as u64);
                        put_varint(&mut p.ops, bytes.len() as u64);
                        p.ops.push(bytecode::BSPATCH);
                        put_varint(&mut p.ops, p.payload.len() as u64);
                        put_varint(&mut p.ops, patch.len() as u64);
                        p.payload.extend_from_slice(&patch);
                        p.ops.push(bytecode::CLOSE);
                        p.ops.push(bytecode::UNSET_READ_SOURCE);
                        counts.bsdiffs += 1;
                    }
                    Some(Patch::Copies(from, spans)) => {
                        push_copies(&mut p, (m, x), &from, &bytes, &spans);
                        counts.copies += 1;
                    }
                    None => {
                        p.ops.push(bytecode::OPEN_SPLICE_AND_CLOSE);
                        put_varint(&mut p.ops, m as u64);
                        put_varint(&mut p.ops, x as u64);
                        put_varint(&mut p.ops, bytes.len() as u64);
                        put_varint(&mut p.ops, p.payload.len() as u64);
                        p.payload.extend_from_slice(&bytes);
                    }
                }
                objects_list.push((csum, ObjectType::File));
            }
        }
    }
    let body = part_payload_bytes(&p);
    drop(p);
    let bytes = match compression {
        Compression::None => {
            let mut out = Vec::with_capacity(body.len() + 1);
            out.push(0);
            out.extend_from_slice(&body);
            out
        }
        Compression::Lzma => {
            let mut out = vec![b'x'];
            out.extend_from_slice(&xz(&body)?);
            out
        }
    };
    let header = PartHeader {
        version: PART_VERSION,
        checksum: Checksum::of(&bytes),
        size: bytes.len() as u64,
        usize: usize_total,
        objects: objects_list,
    };
    Ok((bytes, header, counts))
}

/// xz like ostree's compressor (lzma2 at preset 8, CRC64), with two changes that cost next
/// to nothing in size: the dictionary is no larger than the part (preset 8's 32 MiB window
/// would only be allocated and faulted in), and a part worth splitting is cut into one block
/// per core and compressed by liblzma's multi-threaded encoder. ostree's
/// `lzma_stream_decoder` reads multi-block streams.
fn xz(body: &[u8]) -> Result<Vec<u8>> {
    const MIN_BLOCK: usize = 1 << 20;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let block = body.len().div_ceil(threads).max(MIN_BLOCK);
    let dict = block.next_power_of_two().clamp(1 << 16, 32 << 20) as u32;
    let mut lzma = liblzma::stream::LzmaOptions::new_preset(8).context("lzma preset 8")?;
    lzma.dict_size(dict);
    let mut filters = liblzma::stream::Filters::new();
    filters.lzma2(&lzma);
    let stream = if body.len() > block {
        liblzma::stream::MtStreamBuilder::new()
            .filters(filters)
            .check(liblzma::stream::Check::Crc64)
            .threads(threads as u32)
            .block_size(block as u64)
            .encoder()
    } else {
        liblzma::stream::Stream::new_stream_encoder(&filters, liblzma::stream::Check::Crc64)
    }
    .context("setting up the lzma encoder")?;
    let mut out = Vec::with_capacity(body.len() / 2);
    let mut enc = liblzma::write::XzEncoder::new_stream(&mut out, stream);
    enc.write_all(body).context("compressing a delta part")?;
    enc.finish().context("compressing a delta part")?;
    Ok(out)
}
