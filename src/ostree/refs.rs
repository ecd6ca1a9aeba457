//! Ref names: validation (ostree's regex) and the `refs/heads` files.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::checksum::Checksum;

/// Validates a ref name against ostree's `(?:[\w\d][-._\w\d]*/)*[\w\d][-._\w\d]*`
/// (ASCII word characters) and rejects names that look like a checksum.
pub fn validate_ref_name(name: &str) -> Result<()> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = !name.is_empty()
        && name.split('/').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if word(c))
                && chars.all(|c| word(c) || c == '-' || c == '.')
        });
    if !ok {
        bail!(
            "invalid ref name '{name}': use letters, digits, '_', '-', '.' and '/'-separated \
             parts that start with a letter, digit or '_' (e.g. fedora/x86_64/cloud)"
        );
    }
    if name.parse::<Checksum>().is_ok() {
        bail!("invalid ref name '{name}': a ref may not look like a checksum");
    }
    Ok(())
}

/// Reads one ref file: 64 hex digits and a newline.
pub fn read_ref_file(path: &Path) -> Result<Checksum> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading ref {}", path.display()))?;
    text.trim_end()
        .parse()
        .with_context(|| format!("parsing ref {}", path.display()))
}

/// Lists the refs below `dir` recursively as (name relative to `dir`, checksum).
pub fn list_ref_dir(dir: &Path) -> Result<Vec<(String, Checksum)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.with_context(|| format!("listing refs in {}", dir.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays below its root");
        let name = rel.to_string_lossy().into_owned();
        // Our own temporary files are never valid ref names.
        if name.starts_with('.') || name.contains("/.") {
            continue;
        }
        out.push((name, read_ref_file(entry.path())?));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        for good in ["main", "fedora/x86_64/cloud", "a.b-c_d", "_x", "9"] {
            validate_ref_name(good).unwrap();
        }
        for bad in [
            "", "/a", "a/", "a//b", "-a", ".a", "a b", "a/.b", "a~1", "é",
        ] {
            assert!(validate_ref_name(bad).is_err(), "{bad} should be rejected");
        }
        assert!(validate_ref_name(&"a".repeat(64)).is_err());
    }
}
