//! Kickstarts: render them from minijinja templates and lint them before a VM boots.
//!
//! - [`render()`]: image definition + pipeline variables -> kickstart text
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

pub use lint::{Finding, LintReport, Severity, lint};
pub use render::{PipelineVars, render};
