//! Kickstarts: render them from minijinja templates and lint them before a VM boots.
//!
//! - [`render()`]: a [`RenderInput`] (built from the image definition) + pipeline variables
//!   -> kickstart text
//! - [`lint()`]: our rules (see [`lint`](mod@lint)); [`lint_file`] adds `ksvalidator`'s findings
//! - [`parse`]: `%include` flattening and pykickstart's line structure

pub mod cli;
pub mod commands;
#[rustfmt::skip]
mod commands_table;
pub mod ksvalidator;
pub mod lint;
pub mod parse;
pub mod render;

use std::path::Path;

use anyhow::{Context, Result};

pub use lint::{Finding, LintReport, Severity, lint};
pub use render::{PipelineVars, RenderInput, render};

/// Lint a kickstart file with our rules and, when `validator` is given, ksvalidator's.
pub fn lint_file(path: &Path, version: &str, validator: Option<&Path>) -> Result<LintReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading kickstart {}", path.display()))?;
    let v = commands::SyntaxVersion::parse(version)?;
    let flat = parse::flatten(&text, path);
    let mut report = lint::lint_flattened(&flat, path, v);
    if let Some(validator) = validator {
        let found = ksvalidator::run(validator, &flat, path, v.name)?;
        report.findings.extend(found);
        report.ksvalidator = Some(validator.to_path_buf());
        report.sort();
    }
    Ok(report)
}
