//! Reading kickstarts the way pykickstart does: `%include` expansion (like ksflatten),
//! shlex word splitting, and the command/section structure.
//!
//! Every line keeps its origin (file and line) through `%include`, so findings name the
//! file the user has to edit.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Sections pykickstart registers (`parser.py` `setupSections`), all versions.
pub const SECTIONS: &[&str] = &[
    "%pre",
    "%pre-install",
    "%post",
    "%onerror",
    "%traceback",
    "%packages",
    "%certificate",
    "%addon",
    "%anaconda",
];

/// `%include` nesting limit; deeper means a loop the cycle check missed or a mistake.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, as given or as found for an `%include`.
    pub file: Arc<Path>,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One physical line of the flattened kickstart.
#[derive(Debug, Clone)]
pub struct SourceLine {
    /// Where the line came from.
    pub origin: Origin,
    /// The line, without its newline.
    pub text: String,
}

/// Why an `%include` could not be inlined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeProblem {
    /// No file at any of the places looked.
    Missing {
        /// The paths tried, in order.
        looked: Vec<PathBuf>,
    },
    /// Reading it failed; the I/O error.
    Unreadable(String),
    /// The file includes itself, directly or not.
    Loop,
    /// Nested deeper than the include limit.
    TooDeep,
    /// `%include` without a path.
    NoPath,
    /// The file lies outside the directories a build may read includes from.
    Outside {
        /// Where the file was found.
        found: PathBuf,
        /// The directories includes may come from.
        allowed: Vec<PathBuf>,
    },
}

/// An `%include` that could not be inlined, and where it is.
#[derive(Debug, Clone)]
pub struct IncludeError {
    /// The `%include` line.
    pub origin: Origin,
    /// The path as written.
    pub path: String,
    /// Why it was not inlined.
    pub problem: IncludeProblem,
}

impl fmt::Display for IncludeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            IncludeProblem::Missing { looked } => write!(
                f,
                "`%include {}`: file not found (looked for {}); create it or fix the path",
                self.path,
                looked
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            IncludeProblem::Unreadable(e) => {
                write!(f, "`%include {}`: cannot read it: {e}", self.path)
            }
            IncludeProblem::Loop => write!(
                f,
                "`%include {}` includes itself (directly or through other files)",
                self.path
            ),
            IncludeProblem::TooDeep => write!(
                f,
                "`%include {}` nests more than {MAX_INCLUDE_DEPTH} levels deep",
                self.path
            ),
            IncludeProblem::NoPath => write!(f, "`%include` without a file name"),
            IncludeProblem::Outside { found, allowed } => write!(
                f,
                "`%include {}`: {} is outside the template directories ({}); not read",
                self.path,
                found.display(),
                allowed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A kickstart with its `%include`s inlined.
#[derive(Debug, Clone, Default)]
pub struct Flattened {
    /// Every line, each with the file and line it came from.
    pub lines: Vec<SourceLine>,
    /// `%include`s left in place because they could not be read.
    pub include_errors: Vec<IncludeError>,
}

impl Flattened {
    /// The flattened text, one `\n`-terminated line per source line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&l.text);
            out.push('\n');
        }
        out
    }
}

/// Inline the `%include`s of `text`, which was read from (or will be written to) `path`.
///
/// Relative include paths are looked up next to the including file first, then relative
/// to the current directory (pykickstart tries them the other way round, but it runs
/// where the kickstart lives; we do not). Unresolvable includes stay as they are and are
/// listed in [`Flattened::include_errors`].
pub fn flatten(text: &str, path: &Path) -> Flattened {
    let mut out = Flattened::default();
    let mut stack = vec![canonical(path)];
    flatten_into(text, path, None, &mut stack, &mut out);
    out
}

/// [`flatten`], reading included files only from inside `allowed` (after resolving symlinks);
/// others stay as `%include` lines with [`IncludeProblem::Outside`]. For a build, so a
/// kickstart cannot pull host files (`%include /etc/shadow`) into what the guest is served
/// or the build log shows.
pub fn flatten_within(text: &str, path: &Path, allowed: &[PathBuf]) -> Flattened {
    let allowed: Vec<PathBuf> = allowed.iter().map(|d| canonical(d)).collect();
    let mut out = Flattened::default();
    let mut stack = vec![canonical(path)];
    flatten_into(text, path, Some(&allowed), &mut stack, &mut out);
    out
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn flatten_into(
    text: &str,
    path: &Path,
    allowed: Option<&[PathBuf]>,
    stack: &mut Vec<PathBuf>,
    out: &mut Flattened,
) {
    let file: Arc<Path> = Arc::from(path);
    for (i, line) in text.lines().enumerate() {
        let origin = Origin {
            file: file.clone(),
            line: i + 1,
        };
        let Some(target) = include_target(line) else {
            out.lines.push(SourceLine {
                origin,
                text: line.to_string(),
            });
            continue;
        };
        match resolve_include(&target, path, allowed, stack) {
            Ok(found) => {
                let body = match std::fs::read_to_string(&found) {
                    Ok(b) => b,
                    Err(e) => {
                        out.include_errors.push(IncludeError {
                            origin: origin.clone(),
                            path: target,
                            problem: IncludeProblem::Unreadable(e.to_string()),
                        });
                        out.lines.push(SourceLine {
                            origin,
                            text: line.to_string(),
                        });
                        continue;
                    }
                };
                stack.push(canonical(&found));
                flatten_into(&body, &found, allowed, stack, out);
                stack.pop();
            }
            Err(problem) => {
                out.include_errors.push(IncludeError {
                    origin: origin.clone(),
                    path: target,
                    problem,
                });
                out.lines.push(SourceLine {
                    origin,
                    text: line.to_string(),
                });
            }
        }
    }
}

/// The argument of an `%include` line, `Some("")` when it has none.
fn include_target(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if !trimmed.starts_with("%include") {
        return None;
    }
    let words = split(trimmed).ok()?;
    if words.first().map(String::as_str) != Some("%include") {
        return None;
    }
    Some(words.get(1).cloned().unwrap_or_default())
}

fn resolve_include(
    target: &str,
    from: &Path,
    allowed: Option<&[PathBuf]>,
    stack: &[PathBuf],
) -> Result<PathBuf, IncludeProblem> {
    if target.is_empty() {
        return Err(IncludeProblem::NoPath);
    }
    if stack.len() > MAX_INCLUDE_DEPTH {
        return Err(IncludeProblem::TooDeep);
    }
    let t = Path::new(target);
    let candidates: Vec<PathBuf> = if t.is_absolute() {
        vec![t.to_path_buf()]
    } else {
        let dir = from.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        vec![dir.join(t), t.to_path_buf()]
    };
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) if stack.contains(&canonical(found)) => Err(IncludeProblem::Loop),
        Some(found)
            if allowed
                .is_some_and(|dirs| !dirs.iter().any(|d| canonical(found).starts_with(d))) =>
        {
            Err(IncludeProblem::Outside {
                found: found.clone(),
                allowed: allowed.unwrap_or_default().to_vec(),
            })
        }
        Some(found) => Ok(found.clone()),
        None => {
            let mut looked = candidates;
            looked.dedup();
            Err(IncludeProblem::Missing { looked })
        }
    }
}

/// Split a line into words like Python's `shlex.split(line, comments=True)`, which
/// pykickstart uses for every command line: POSIX quoting, backslash escapes, and `#`
/// starting a comment wherever a word could continue. Hand-written because the `shlex`
/// crate has no comment support and pykickstart's `#` handling must match exactly.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    #[derive(PartialEq)]
    enum State {
        Space,
        Word,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut state = State::Space;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            State::Space | State::Word => match c {
                c if c.is_whitespace() => {
                    if state == State::Word {
                        words.push(std::mem::take(&mut word));
                        state = State::Space;
                    }
                }
                '#' => break,
                '\'' => state = State::Single,
                '"' => state = State::Double,
                '\\' => match chars.next() {
                    Some(n) => {
                        word.push(n);
                        state = State::Word;
                    }
                    None => return Err("no character after the final backslash".into()),
                },
                c => {
                    word.push(c);
                    state = State::Word;
                }
            },
            State::Single => match c {
                '\'' => state = State::Word,
                c => word.push(c),
            },
            State::Double => match c {
                '"' => state = State::Word,
                '\\' if matches!(chars.peek(), Some('"' | '\\')) => {
                    word.push(chars.next().unwrap_or('\\'));
                }
                c => word.push(c),
            },
        }
    }
    match state {
        State::Single | State::Double => Err("no closing quotation".into()),
        State::Word => {
            words.push(word);
            Ok(words)
        }
        State::Space => Ok(words),
    }
}

/// A command line outside any section.
#[derive(Debug, Clone)]
pub struct Command {
    /// Where the command starts.
    pub origin: Origin,
    /// Its words as shlex splits them; `args[0]` is the command's name.
    pub args: Vec<String>,
}

impl Command {
    /// The command's name (`ostreesetup`).
    pub fn name(&self) -> &str {
        &self.args[0]
    }

    /// The value of `--name=value` or `--name value`; `Some("")` for a bare flag.
    pub fn option(&self, name: &str) -> Option<&str> {
        let mut it = self.args[1..].iter().peekable();
        while let Some(a) = it.next() {
            if let Some(rest) = a.strip_prefix(name) {
                if let Some(v) = rest.strip_prefix('=') {
                    return Some(v);
                }
                if rest.is_empty() {
                    return Some(match it.peek() {
                        Some(n) if !n.starts_with("--") => n.as_str(),
                        _ => "",
                    });
                }
            }
        }
        None
    }

    /// Whether option `name` (`--osname`) is given, with or without a value.
    pub fn has_flag(&self, name: &str) -> bool {
        self.option(name).is_some()
    }
}

/// A `%section ... %end` block.
#[derive(Debug, Clone)]
pub struct Section {
    /// Where the header line is.
    pub origin: Origin,
    /// Header words, `args[0]` being the section name (`%post`).
    pub args: Vec<String>,
    /// The lines between the header and `%end`.
    pub body: Vec<SourceLine>,
    /// Where its `%end` is; `None` when it has none.
    pub end: Option<Origin>,
}

impl Section {
    /// The section's name (`%post`).
    pub fn name(&self) -> &str {
        &self.args[0]
    }
}

/// A top-level element of a kickstart, in file order.
#[derive(Debug, Clone)]
pub enum Item {
    /// A command line.
    Command(Command),
    /// A `%section ... %end` block.
    Section(Section),
}

/// A structural problem found while reading (bad quoting, unknown section, stray `%end`).
#[derive(Debug, Clone)]
pub struct SyntaxProblem {
    /// Where it was found.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
}

/// A kickstart split into commands and sections, with the problems found on the way.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Commands and sections in file order.
    pub items: Vec<Item>,
    /// Structural problems (bad quoting, unknown sections, stray `%end`).
    pub problems: Vec<SyntaxProblem>,
}

impl Parsed {
    /// The commands, in file order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.items.iter().filter_map(|i| match i {
            Item::Command(c) => Some(c),
            Item::Section(_) => None,
        })
    }

    /// The sections, in file order.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.items.iter().filter_map(|i| match i {
            Item::Section(s) => Some(s),
            Item::Command(_) => None,
        })
    }
}

/// Structure flattened lines into commands and sections, following pykickstart's state
/// machine: inside a section only a line whose first word is `%end` or a known section
/// header is special; anything else belongs to the section's body.
pub fn parse(lines: &[SourceLine]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut open: Option<Section> = None;
    for line in lines {
        let trimmed = line.text.trim_start();
        if let Some(section) = open.as_mut() {
            let first = trimmed.split_whitespace().next().unwrap_or("");
            if first == "%end" {
                section.end = Some(line.origin.clone());
                parsed
                    .items
                    .push(Item::Section(open.take().expect("open section")));
                continue;
            }
            if !SECTIONS.contains(&first) {
                section.body.push(line.clone());
                continue;
            }
            // A new section header while one is open: the open one lacks its %end.
            parsed
                .items
                .push(Item::Section(open.take().expect("open section")));
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let args = match split(&line.text) {
            Ok(a) if a.is_empty() => continue,
            Ok(a) => a,
            Err(e) => {
                parsed.problems.push(SyntaxProblem {
                    origin: line.origin.clone(),
                    message: format!("cannot split this line into words: {e}"),
                });
                continue;
            }
        };
        let first = args[0].as_str();
        if first == "%include" || first == "%ksappend" {
            // Unresolved includes are reported by `flatten`; %ksappend is preprocessing.
            continue;
        }
        if let Some(stripped) = first.strip_prefix('%') {
            if first == "%end" {
                parsed.problems.push(SyntaxProblem {
                    origin: line.origin.clone(),
                    message: "`%end` without an open section; remove it or add the missing \
                              section header"
                        .into(),
                });
                continue;
            }
            if !SECTIONS.contains(&first) {
                let hint = SECTIONS
                    .iter()
                    .map(|s| (strsim::levenshtein(&s[1..], stripped), *s))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, s)| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                parsed.problems.push(SyntaxProblem {
                    origin: line.origin.clone(),
                    message: format!("unknown section `{first}`{hint}"),
                });
            }
            open = Some(Section {
                origin: line.origin.clone(),
                args,
                body: Vec::new(),
                end: None,
            });
            continue;
        }
        parsed.items.push(Item::Command(Command {
            origin: line.origin.clone(),
            args,
        }));
    }
    if let Some(section) = open.take() {
        parsed.items.push(Item::Section(section));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_python_shlex() {
        // Expected values from python3 -c 'import shlex; print(shlex.split(L, comments=True))'.
        let cases: &[(&str, &[&str])] = &[
            ("a --url=http://x/#frag b", &["a", "--url=http://x/"]),
            (r#"a "b#c" d\ e"#, &["a", "b#c", "d e"]),
            (
                r#"bootloader --append="console=ttyS0 quiet""#,
                &["bootloader", "--append=console=ttyS0 quiet"],
            ),
            (
                r#"x 'it''s' "q\"uote" "a\b""#,
                &["x", "its", "q\"uote", "a\\b"],
            ),
            ("  # only a comment", &[]),
            (r#"x """#, &["x", ""]),
        ];
        for (line, want) in cases {
            assert_eq!(split(line).unwrap(), *want, "{line}");
        }
        assert!(split("x 'open").is_err());
        assert!(split("x \\").is_err());
    }

    fn lines(text: &str) -> Vec<SourceLine> {
        flatten(text, Path::new("t.ks")).lines
    }

    #[test]
    fn sections_and_commands() {
        let p = parse(&lines(
            "text\n%post --erroronfail\n%foo is fine in a script\nrm -rf /x # comment\n%end\npoweroff\n",
        ));
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let names: Vec<_> = p.commands().map(|c| c.name().to_string()).collect();
        assert_eq!(names, ["text", "poweroff"]);
        let post = p.sections().next().unwrap();
        assert_eq!(post.args, ["%post", "--erroronfail"]);
        assert_eq!(post.body.len(), 2);
        assert_eq!(post.end.as_ref().unwrap().line, 5);
    }

    #[test]
    fn unterminated_section_is_closed_by_the_next_header() {
        let p = parse(&lines("%pre\necho\n%post\necho\n%end\n"));
        let ends: Vec<_> = p.sections().map(|s| s.end.is_some()).collect();
        assert_eq!(ends, [false, true]);
    }

    #[test]
    fn options() {
        let p = parse(&lines(
            "ostreesetup --osname=a --url http://x/ --nogpg --ref=r\n",
        ));
        let c = p.commands().next().unwrap();
        assert_eq!(c.option("--osname"), Some("a"));
        assert_eq!(c.option("--url"), Some("http://x/"));
        assert_eq!(c.option("--nogpg"), Some(""));
        assert_eq!(c.option("--remote"), None);
    }

    #[test]
    fn includes_are_inlined_with_origins_and_loops_caught() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.ks");
        std::fs::write(dir.path().join("part.ks"), "zerombr\n%include main.ks\n").unwrap();
        let text = "text\n%include part.ks\n%include gone.ks\npoweroff\n";
        std::fs::write(&main, text).unwrap();
        let flat = flatten(text, &main);
        let texts: Vec<_> = flat.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "text",
                "zerombr",
                "%include main.ks",
                "%include gone.ks",
                "poweroff"
            ]
        );
        assert_eq!(flat.lines[1].origin.file.file_name().unwrap(), "part.ks");
        assert_eq!(flat.lines[1].origin.line, 1);
        assert_eq!(flat.include_errors.len(), 2);
        assert_eq!(flat.include_errors[0].problem, IncludeProblem::Loop);
        assert!(matches!(
            flat.include_errors[1].problem,
            IncludeProblem::Missing { .. }
        ));
        assert!(flat.include_errors[1].to_string().contains("gone.ks"));
    }
}
