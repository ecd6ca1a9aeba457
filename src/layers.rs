//! The layer order of the crate's modules, checked by a test over the `use` graph of `src/`.
//!
//! A file may import files on its own floor or below, never above, and no two files may import
//! each other, directly or through others (docs/architecture.md, "Layers"). Each module's
//! `cli.rs` is a front-end: it sits on the top floor with `cli.rs` and `main.rs`, and nothing
//! below that floor imports it.
//!
//! The scan is hand-written rather than done with `syn`: it only needs `use` trees and
//! `crate::`/`super::` paths, and `syn` with its `full` feature would be one more crate to
//! compile for the test target.

/// Floors from the bottom up; a top-level module not listed here fails the test, so a new
/// module has to be given its place.
pub const FLOORS: &[&[&str]] = &[
    &[
        "fsutil",
        "compressibility",
        "command",
        "runtime",
        "size",
        "progress",
    ],
    &["ostree"],
    &["compose", "image", "kickstart", "mirror"],
    &["vm"],
    &["pipeline"],
    // Front-ends: the command line (`cli.rs`, `main.rs` and every module's `cli.rs`).
    &["cli", "main"],
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, VecDeque};
    use std::path::Path;

    use super::FLOORS;

    type Graph = BTreeMap<String, BTreeSet<String>>;

    /// `a::b::c` for `a/b/c.rs` and `a/b/c/mod.rs`; empty for `lib.rs`.
    fn module_of(file: &str) -> Vec<String> {
        let stem = file.strip_suffix(".rs").unwrap_or(file);
        let mut segs: Vec<String> = stem.split('/').map(str::to_string).collect();
        if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
            segs.pop();
        }
        segs
    }

    /// The file that defines the longest prefix of `path` (an item path resolves to the
    /// file of its module).
    fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
        (0..=path.len()).rev().find_map(|n| {
            if n == 0 {
                return Some("lib.rs".to_string());
            }
            let base = path[..n].join("/");
            [format!("{base}.rs"), format!("{base}/mod.rs")]
                .into_iter()
                .find(|f| files.contains(f))
        })
    }

    /// Expands a use tree (`a::{b, c::{d, self}}`) into its paths.
    fn expand_use_tree(tree: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        expand_into(&[], tree, &mut out);
        out
    }

    fn expand_into(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        let mut path = prefix.to_vec();
        match tree.find('{') {
            Some(open) if tree.ends_with('}') => {
                path.extend(segments(&tree[..open]));
                let inner = &tree[open + 1..tree.len() - 1];
                let (mut depth, mut start) = (0usize, 0usize);
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth = depth.saturating_sub(1),
                        ',' if depth == 0 => {
                            expand_into(&path, &inner[start..i], out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                expand_into(&path, &inner[start..], out);
            }
            _ => {
                let tree = tree.split_once(" as ").map_or(tree, |(p, _)| p);
                path.extend(segments(tree).filter(|s| s != "self" && s != "*"));
                if !tree.is_empty() {
                    out.push(path);
                }
            }
        }
    }

    fn segments(path: &str) -> impl Iterator<Item = String> + '_ {
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// `crate::`/`super::`/`self::` paths and paths into a child module to absolute module
    /// paths, seen from `module`.
    fn absolute(module: &[String], path: &[String], children: &[String]) -> Option<Vec<String>> {
        match path.first().map(String::as_str) {
            Some(first) if children.iter().any(|c| c == first) => Some([module, path].concat()),
            Some("crate") => Some(path[1..].to_vec()),
            Some("super") => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                let mut base = module[..module.len().checked_sub(ups)?].to_vec();
                base.extend_from_slice(&path[ups..]);
                Some(base)
            }
            Some("self") => Some([module, &path[1..]].concat()),
            _ => None,
        }
    }

    /// Paths a file refers to: its `use` items and the `crate::`/`super::`/`child::` paths in
    /// its code. Comment lines are skipped, and so is the unit-test module at the end of a file
    /// (its `super::` is the file itself).
    fn referenced_paths(text: &str, children: &[String]) -> Vec<Vec<String>> {
        let lines: Vec<&str> = text.lines().collect();
        let tests_at = lines
            .windows(2)
            .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod "))
            .unwrap_or(lines.len());
        let code: Vec<&str> = lines[..tests_at]
            .iter()
            .copied()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        let code = code.join("\n");
        let mut out = Vec::new();
        // `use` items start a line; they end at the first `;`.
        let mut offset = 0;
        for line in code.split_inclusive('\n') {
            let item = line.trim_start();
            let item = item
                .strip_prefix("pub(crate) ")
                .or_else(|| item.strip_prefix("pub "))
                .unwrap_or(item);
            if let Some(tree) = item.strip_prefix("use ") {
                let start = offset + line.len() - tree.len();
                if let Some(end) = code[start..].find(';') {
                    out.extend(expand_use_tree(&code[start..start + end]));
                }
            }
            offset += line.len();
        }
        let roots = ["crate", "super"]
            .into_iter()
            .chain(children.iter().map(String::as_str));
        for root in roots.map(|r| format!("{r}::")) {
            let mut from = 0;
            while let Some(at) = code[from..].find(&root) {
                let at = from + at;
                from = at + root.len();
                let before = code[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let path: String = code[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                out.push(segments(&path).collect());
            }
        }
        out
    }

    /// The file-level import graph of a source tree given as (path under `src/`, text).
    fn import_graph(sources: &BTreeMap<String, String>) -> Graph {
        let files: BTreeSet<String> = sources.keys().cloned().collect();
        let mut graph = Graph::new();
        let modules: Vec<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
        for (file, text) in sources {
            let module = module_of(file);
            let children: Vec<String> = modules
                .iter()
                .filter(|m| m.len() == module.len() + 1 && m.starts_with(&module))
                .map(|m| m[module.len()].clone())
                .collect();
            let targets = graph.entry(file.clone()).or_default();
            for path in referenced_paths(text, &children) {
                let Some(target) =
                    absolute(&module, &path, &children).and_then(|p| file_of(&p, &files))
                else {
                    continue;
                };
                if target != *file && target != "lib.rs" {
                    targets.insert(target);
                }
            }
        }
        graph
    }

    /// The floor of a file, or an error naming the module missing from [`FLOORS`].
    fn floor_of(file: &str) -> Result<usize, String> {
        let top = file
            .split('/')
            .next()
            .unwrap_or(file)
            .trim_end_matches(".rs");
        let top = if file.ends_with("/cli.rs") {
            "cli"
        } else {
            top
        };
        FLOORS
            .iter()
            .position(|floor| floor.contains(&top))
            .ok_or_else(|| format!("src/{file}: module `{top}` has no floor in layers::FLOORS"))
    }

    /// Everything wrong with a graph: upward imports, imports of a `cli.rs` from below the
    /// front-end floor, and cycles between files.
    fn violations(graph: &Graph) -> Vec<String> {
        let mut found = Vec::new();
        for (from, targets) in graph {
            if from == "lib.rs" {
                continue;
            }
            for to in targets {
                match (floor_of(from), floor_of(to)) {
                    (Ok(a), Ok(b)) if a < b => found.push(format!(
                        "src/{from} imports src/{to}, which is on a higher floor ({a} < {b})"
                    )),
                    (Err(e), _) | (_, Err(e)) => found.push(e),
                    _ => {}
                }
            }
        }
        let mut cycles = BTreeSet::new();
        for (from, targets) in graph {
            for to in targets {
                if let Some(mut path) = shortest_path(graph, to, from) {
                    path.insert(0, from.clone());
                    let mut key = path[..path.len() - 1].to_vec();
                    key.sort();
                    if cycles.insert(key) {
                        let shown: Vec<String> = path.iter().map(|f| format!("src/{f}")).collect();
                        found.push(format!("import cycle: {}", shown.join(" -> ")));
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    fn shortest_path(graph: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut path = vec![to.to_string()];
                let mut at = to;
                while at != from {
                    at = came_from[at];
                    path.push(at.to_string());
                }
                path.reverse();
                return Some(path);
            }
            for next in graph.get(node).into_iter().flatten() {
                if next != from && !came_from.contains_key(next.as_str()) {
                    came_from.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    fn read_sources(dir: &Path, under: &str, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let rel = format!("{under}{name}");
            if path.is_dir() {
                read_sources(&path, &format!("{rel}/"), out);
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                out.insert(rel, text);
            }
        }
    }

    fn synthetic(files: &[(&str, &str)]) -> Graph {
        import_graph(
            &files
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect(),
        )
    }

    #[test]
    fn use_trees_expand_to_their_paths() {
        assert_eq!(
            expand_use_tree("crate::a::{b, c::{self, D}, e as f}"),
            vec![
                vec!["crate", "a", "b"],
                vec!["crate", "a", "c"],
                vec!["crate", "a", "c", "D"],
                vec!["crate", "a", "e"],
            ]
        );
    }

    #[test]
    fn the_check_reports_upward_imports_cycles_and_cli_imports() {
        let graph = synthetic(&[
            ("lib.rs", "pub mod ostree; pub mod pipeline;"),
            ("ostree/mod.rs", "pub mod repo; pub mod cli;"),
            // upward: ostree -> pipeline
            ("ostree/repo.rs", "use crate::pipeline::build::Thing;\n"),
            (
                "ostree/cli.rs",
                "// use crate::pipeline::x; (a comment is not an import)\n",
            ),
            ("pipeline/mod.rs", "pub mod build; pub mod stages;"),
            // cycle through a `super::` import and an inline path; and a cli import
            (
                "pipeline/build.rs",
                "use super::stages;\nfn f() { crate::ostree::cli::g() }\n",
            ),
            ("pipeline/stages.rs", "use super::{build::{self, Ctx}};\n"),
        ]);
        let found = violations(&graph);
        assert_eq!(
            found,
            vec![
                "import cycle: src/pipeline/build.rs -> src/pipeline/stages.rs -> src/pipeline/build.rs",
                "src/ostree/repo.rs imports src/pipeline/build.rs, which is on a higher floor (1 < 4)",
                "src/pipeline/build.rs imports src/ostree/cli.rs, which is on a higher floor (4 < 5)",
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn no_upward_imports_and_no_cycles_in_src() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut sources = BTreeMap::new();
        read_sources(&root, "", &mut sources);
        // This file's test data holds example imports, not imports.
        sources.remove("layers.rs");
        let graph = import_graph(&sources);
        // The scan must see the imports it checks, or the check would pass on an empty graph.
        assert!(
            graph["pipeline/stages.rs"].contains("compose/mod.rs")
                && graph["ostree/repo.rs"].contains("ostree/objects.rs"),
            "the scan missed known imports: {graph:#?}"
        );
        let found = violations(&graph);
        assert!(
            found.is_empty(),
            "layering violations:\n{}",
            found.join("\n")
        );
    }
}
