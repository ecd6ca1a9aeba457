//! Kickstarts: render them from minijinja templates and lint them before a VM boots.

pub mod cli;
