//! `kickstart render`: an image's minijinja template plus variables -> kickstart text.
//!
//! Templates live next to the image definition (`kickstarts/<image>/`); partials (storage,
//! bootloader, network, ostreesetup, %post blocks) in the project's `templates/`. Undefined
//! variables are errors (strict mode), and every error names the template file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

/// What a kickstart is rendered from, built by the caller (the pipeline builds it from the
/// image definition), so this module does not depend on the definition's format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderInput {
    /// The minijinja template.
    pub template: PathBuf,
    /// Extra directories searched for partials after the template's own directory and the
    /// project's `templates/`.
    pub template_dirs: Vec<PathBuf>,
    /// Where the search for the project's `templates/` starts (the definition's directory).
    pub base_dir: PathBuf,
    /// `kickstart.vars`.
    pub vars: BTreeMap<String, Value>,
    /// `image.name`.
    pub image_name: String,
    /// `ostree.osname`.
    pub osname: String,
    /// `ostree.remote`.
    pub remote: String,
    /// `ostree.url` when the definition sets it.
    pub url: Option<String>,
    /// `ostree.ref` when the definition sets it.
    pub ostree_ref: Option<String>,
    /// `signing.keypath`: where the signing key's public half is shipped in the tree.
    pub signing_keypath: Option<String>,
}

/// Values the pipeline knows and the image definition does not: where the install stage
/// serves the repository and which ref it composed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineVars {
    /// `ostree.url`, e.g. `http://10.0.2.2:8000/repo`.
    pub ostree_url: Option<String>,
    /// `ostree.ref`, e.g. `fedora/41/x86_64/atomic-host`.
    pub ostree_ref: Option<String>,
    /// `server.address`, the install server as the guest sees it, e.g. `10.0.2.2:8000`.
    pub server_address: Option<String>,
}

/// Render the image's kickstart. Variables, later ones winning: `kickstart.vars`;
/// `image.name`; `ostree.osname`/`remote`/`url`/`ref` from the definition; the pipeline's
/// values; then `overrides` (`("ostree.url", "http://...")`, dotted keys).
pub fn render(
    input: &RenderInput,
    pipeline: &PipelineVars,
    overrides: &[(String, String)],
) -> Result<String> {
    let ctx = context(input, pipeline, overrides)?;
    render_template(&input.template, &template_dirs(input), &ctx)
}

/// The directories templates, partials and `%include`d files of an image come from: the
/// template's own, `kickstart.template_dirs` and the project's `templates/`.
pub fn template_dirs(input: &RenderInput) -> Vec<PathBuf> {
    let mut dirs = vec![
        input
            .template
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    ];
    dirs.extend(input.template_dirs.iter().cloned());
    if let Some(shared) = project_templates_dir(&input.base_dir) {
        dirs.push(shared);
    }
    dirs
}

/// The variables a template sees, as one JSON object (sorted keys: deterministic output).
pub fn context(
    input: &RenderInput,
    pipeline: &PipelineVars,
    overrides: &[(String, String)],
) -> Result<Value> {
    let ctx: Map<String, Value> = input
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut root = Value::Object(ctx);
    set(
        &mut root,
        "image.name",
        Value::String(input.image_name.clone()),
    )?;
    set(&mut root, "ostree.osname", input.osname.clone().into())?;
    set(&mut root, "ostree.remote", input.remote.clone().into())?;
    let maybe = [
        ("ostree.url", input.url.as_ref()),
        ("ostree.ref", input.ostree_ref.as_ref()),
        ("ostree.url", pipeline.ostree_url.as_ref()),
        ("ostree.ref", pipeline.ostree_ref.as_ref()),
        ("server.address", pipeline.server_address.as_ref()),
    ];
    for (key, value) in maybe {
        if let Some(v) = value {
            set(&mut root, key, v.clone().into())?;
        }
    }
    if let Some(keypath) = &input.signing_keypath {
        // The key the build signs with is shipped in the tree here; templates point the
        // installed remote's gpgkeypath at it (post.ks.j2 readd_remote).
        set(&mut root, "signing.keypath", keypath.clone().into())?;
    }
    for (key, value) in overrides {
        set(&mut root, key, value.clone().into())
            .with_context(|| format!("applying --set {key}={value}"))?;
    }
    Ok(root)
}

/// Set a dotted key (`a.b.c`), creating objects on the way.
fn set(root: &mut Value, key: &str, value: Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("invalid variable name {key:?}: empty part between dots");
    }
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = cur else {
            bail!(
                "cannot set {key:?}: {:?} is not a mapping",
                parts[..i].join(".")
            );
        };
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    unreachable!("split yields at least one part")
}

/// The nearest `templates/` directory at or above `start` (the project's partials).
fn project_templates_dir(start: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(start).ok()?;
    start
        .ancestors()
        .map(|a| a.join("templates"))
        .find(|p| p.is_dir())
}

/// Render `template` with partials looked up in `dirs`, in order.
pub fn render_template(template: &Path, dirs: &[PathBuf], ctx: &Value) -> Result<String> {
    let name = template
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!(
                "template path {} has no usable file name",
                template.display()
            )
        })?
        .to_string();
    if !template.is_file() {
        bail!(
            "kickstart template {} does not exist (kickstart.template in the image definition)",
            template.display()
        );
    }
    // The loader records where each template name was found, to name files in errors.
    let found: Arc<Mutex<BTreeMap<String, PathBuf>>> = Arc::default();
    found
        .lock()
        .expect("template map")
        .insert(name.clone(), template.to_path_buf());
    let mut env = environment();
    let loader_dirs: Vec<PathBuf> = dirs.to_vec();
    let main = (name.clone(), template.to_path_buf());
    let record = found.clone();
    env.set_loader(move |wanted: &str| {
        let path = if wanted == main.0 {
            Some(main.1.clone())
        } else {
            // Names with `..` or a leading `/` cannot escape the template directories.
            if wanted.split('/').any(|s| s == ".." || s.is_empty()) {
                return Ok(None);
            }
            loader_dirs
                .iter()
                .map(|d| d.join(wanted))
                .find(|p| p.is_file())
        };
        let Some(path) = path else { return Ok(None) };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot read template {}", path.display()),
            )
            .with_source(e)
        })?;
        record
            .lock()
            .expect("template map")
            .insert(wanted.to_string(), path);
        Ok(Some(text))
    });
    let result = env
        .get_template(&name)
        .and_then(|t| t.render(minijinja::value::Serde(ctx)));
    result.map_err(|e| {
        let map = found.lock().expect("template map");
        describe_error(&e, &map, dirs, ctx)
    })
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_debug(true);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.add_filter("shell_quote", shell_quote);
    env.add_filter("ks_quote", ks_quote);
    env
}

/// Turn a minijinja error into "FILE:LINE: what: `expression`", following the cause chain
/// (an error inside an included partial is reported at the partial).
fn describe_error(
    err: &Error,
    found: &BTreeMap<String, PathBuf>,
    dirs: &[PathBuf],
    ctx: &Value,
) -> anyhow::Error {
    // The innermost minijinja error carries the partial's name and line.
    let mut inner = err;
    while let Some(src) = std::error::Error::source(inner).and_then(|s| s.downcast_ref::<Error>()) {
        inner = src;
    }
    let location = |e: &Error| {
        let file = e
            .name()
            .map(|n| {
                found
                    .get(n)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| n.to_string())
            })
            .unwrap_or_else(|| "<template>".into());
        match e.line() {
            Some(l) => format!("{file}:{l}"),
            None => file,
        }
    };
    let loc = location(inner);
    let outer = location(err);
    let called_from = if outer != loc {
        format!(" (reached from {outer})")
    } else {
        String::new()
    };
    let snippet = inner
        .template_source()
        .zip(inner.range())
        .and_then(|(src, r)| src.get(r))
        .map(|s| s.trim().to_string());
    let what = match inner.kind() {
        ErrorKind::UndefinedError => {
            // minijinja does not say which name was undefined (its span often covers only
            // the filter that received it), so find it: the first dotted name on the line
            // that does not resolve in the context.
            let line_text = inner
                .template_source()
                .zip(inner.line())
                .and_then(|(src, l)| src.lines().nth(l - 1))
                .unwrap_or("");
            match undefined_name(line_text, ctx) {
                Some(name) => format!(
                    "undefined variable `{name}` in `{}` (set it in kickstart.vars of the image \
                     definition, or pass --set {name}=VALUE)",
                    line_text.trim()
                ),
                None => format!(
                    "undefined value in `{}`{}",
                    line_text.trim(),
                    snippet.map(|s| format!(" (at `{s}`)")).unwrap_or_default()
                ),
            }
        }
        ErrorKind::TemplateNotFound => format!(
            "{} (looked in {})",
            inner.detail().unwrap_or("template not found"),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ErrorKind::SyntaxError => format!(
            "template syntax error: {}{}",
            inner.detail().unwrap_or(""),
            snippet.map(|s| format!(" near `{s}`")).unwrap_or_default()
        ),
        _ => format!(
            "{}{}",
            inner.detail().unwrap_or(&inner.kind().to_string()),
            snippet.map(|s| format!(" in `{s}`")).unwrap_or_default()
        ),
    };
    anyhow!("{loc}: {what}{called_from}")
}

/// Template keywords and literals that look like names.
const KEYWORDS: &[&str] = &[
    "if",
    "elif",
    "else",
    "endif",
    "for",
    "endfor",
    "in",
    "not",
    "and",
    "or",
    "is",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "set",
    "endset",
    "import",
    "from",
    "as",
    "macro",
    "endmacro",
    "call",
    "endcall",
    "include",
    "extends",
    "block",
    "endblock",
    "with",
    "endwith",
    "filter",
    "endfilter",
    "loop",
    "namespace",
    "ignore",
    "missing",
];

/// The first dotted name in the template expressions of `line` that does not resolve in
/// `ctx`, cut after its first missing part (`ostree.url`, not `ostree.url.host`).
fn undefined_name(line: &str, ctx: &Value) -> Option<String> {
    // Only the text inside {{ }} and {% %} is template code.
    let mut code = String::new();
    let mut rest = line;
    let mut any = false;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        any = true;
        let body = &after[1..];
        let end = body.find(close).unwrap_or(body.len());
        code.push_str(&body[..end]);
        code.push(' ');
        rest = &body[end..];
    }
    if !any {
        code = line.to_string();
    }
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    let mut prev = ' ';
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_') || prev == '.' {
            if !c.is_whitespace() {
                prev = c;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
        {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim_end_matches('.')
            .to_string();
        let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
        let is_filter = prev == '|';
        let is_call = next == Some('(');
        let is_keyword_arg = next == Some('=') && chars.get(i + 1) != Some(&'=');
        prev = 'a';
        if is_filter || is_call || is_keyword_arg || KEYWORDS.contains(&name.as_str()) {
            continue;
        }
        let mut cur = ctx;
        let mut resolved = Vec::new();
        for part in name.split('.') {
            resolved.push(part);
            match cur.get(part) {
                Some(v) => cur = v,
                None => return Some(resolved.join(".")),
            }
        }
    }
    None
}

/// POSIX shell quoting for `%pre`/`%post` bodies: `it's` -> `'it'\''s'`.
pub fn shell_quote(value: String) -> String {
    crate::command::shell_quote(&value)
}

/// Quoting for a kickstart command argument (pykickstart splits with shlex): double quotes
/// with `"` and `\` escaped. A newline cannot be quoted: a command is one line.
pub fn ks_quote(value: String) -> Result<String, Error> {
    if value.contains(['\n', '\r']) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("ks_quote: {value:?} contains a line break; a kickstart command is one line"),
        ));
    }
    if crate::command::is_plain_word(&value) {
        Ok(value)
    } else {
        Ok(format!(
            "\"{}\"",
            value.replace('\\', r"\\").replace('"', "\\\"")
        ))
    }
}

/// Inline `%include`s of rendered `text`; relative paths are relative to the template, and
/// only files inside `dirs` (see [`template_dirs`]) are read.
pub fn flatten(text: &str, template: &Path, dirs: &[PathBuf]) -> Result<String> {
    let flat = super::parse::flatten_within(text, template, dirs);
    if let Some(e) = flat.include_errors.first() {
        bail!("{}: {e}", e.origin);
    }
    Ok(flat.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("plain/path-1.0".into()), "plain/path-1.0");
        assert_eq!(shell_quote("it's here".into()), r"'it'\''s here'");
        assert_eq!(shell_quote(String::new()), "''");
        assert_eq!(ks_quote("console=ttyS0".into()).unwrap(), "console=ttyS0");
        assert_eq!(
            ks_quote(r#"a "b" c\d"#.into()).unwrap(),
            r#""a \"b\" c\\d""#
        );
        assert!(ks_quote("a\nb".into()).is_err());
        // ks_quote's output splits back to the input under pykickstart's shlex rules.
        let v = r#"console=ttyS0,115200n8 x="y z" #not-a-comment \back"#;
        let quoted = ks_quote(v.into()).unwrap();
        assert_eq!(
            super::super::parse::split(&format!("bootloader --append={quoted}")).unwrap(),
            ["bootloader", &format!("--append={v}")]
        );
    }

    #[test]
    fn finds_the_undefined_name() {
        let ctx = serde_json::json!({"ostree": {"osname": "a"}, "lang": "en"});
        let cases = [
            ("lang {{ lang }} {{ hostnme | upper }}", Some("hostnme")),
            ("--url={{ ostree.url | ks_quote }}", Some("ostree.url")),
            (
                "{{ m.setup(ostree, gpg=false) }} {{ server.address.port }}",
                Some("server"),
            ),
            ("{% if 'x' in lang %}{{ ostree.osname }}{% endif %}", None),
            ("{{ \"lit.eral\" ~ lang }}", None),
        ];
        for (line, want) in cases {
            assert_eq!(undefined_name(line, &ctx).as_deref(), want, "{line}");
        }
    }

    #[test]
    fn dotted_overrides() {
        let mut v = serde_json::json!({"a": {"b": 1}, "s": "x"});
        set(&mut v, "a.c.d", "e".into()).unwrap();
        assert_eq!(v["a"]["c"]["d"], "e");
        assert_eq!(v["a"]["b"], 1);
        assert!(
            set(&mut v, "s.t", "u".into())
                .unwrap_err()
                .to_string()
                .contains("not a mapping")
        );
        assert!(set(&mut v, "a..b", "u".into()).is_err());
    }
}
