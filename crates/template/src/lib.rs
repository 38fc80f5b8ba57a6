//! Outflow's template engine: Django 5.2's template language in Klaviyo's
//! dialect, for webhook URLs, headers and bodies. Pure: no I/O, no clock.
//!
//! Compile once with [`Template::compile`] (errors carry line and column),
//! then render many times, from any thread, with [`Template::render`]
//! against a [`Context`] that borrows `serde_json` data. "Now" (for
//! `{% now %}`, `{% today %}`, `weeks_since`, `timesince`) comes only from
//! [`Context::with_now`]. [`Options`] sets autoescaping, `string_if_invalid`
//! and the [`Limits`] that bound output size, work and nesting.
//!
//! ```
//! use outflow_template::{Context, Options, Template};
//! let data = serde_json::json!({"person": {"first_name": "ada"}});
//! let opts = Options { autoescape: false, ..Options::default() };
//! let t = Template::compile("Hi {{ person.first_name|title }}", &opts).unwrap();
//! assert_eq!(t.render(&Context::from_json(&data)).unwrap(), "Hi Ada");
//! ```

pub mod cases;
mod condition;
mod context;
mod date;
mod error;
mod expression;
pub mod filters;
#[doc(hidden)]
pub mod fuzzing;
mod lexer;
mod nodes;
mod parser;
mod render;
mod text;
mod value;

use std::sync::atomic::{AtomicUsize, Ordering};

pub use context::Context;
pub use error::{RenderError, TemplateError};
pub use value::{Dict, List, Safe, Value};

/// Bounds that keep hostile templates from exhausting memory, stack or time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest output (and largest single value a filter may build), bytes.
    pub max_output_bytes: usize,
    /// Maximum node renders plus loop iterations per render.
    pub max_steps: u64,
    /// Maximum nesting of block tags (checked when compiling and rendering)
    /// and of `if` expressions.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 4 << 20,
            max_steps: 2_000_000,
            max_depth: 64,
        }
    }
}

/// Engine settings fixed at compile time (Django's `Engine` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// HTML-escape variable output (Django's and Klaviyo's default is on;
    /// JSON webhook bodies usually want it off).
    pub autoescape: bool,
    /// Printed for variables that do not resolve (`%s` is replaced by the name).
    pub string_if_invalid: String,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            autoescape: true,
            string_if_invalid: String::new(),
            limits: Limits::default(),
        }
    }
}

/// A compiled template: parse once, render many times, share across threads.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<nodes::Node>,
    cycles: Vec<nodes::CycleDef>,
    options: Options,
    /// Largest output seen so far, so later renders allocate once.
    size_hint: AtomicUsize,
}

impl Clone for Template {
    fn clone(&self) -> Self {
        Template {
            nodes: self.nodes.clone(),
            cycles: self.cycles.clone(),
            options: self.options.clone(),
            size_hint: AtomicUsize::new(self.size_hint.load(Ordering::Relaxed)),
        }
    }
}

impl Template {
    /// Compile `src`; errors carry the line and column of the offending tag.
    pub fn compile(src: &str, options: &Options) -> Result<Template, TemplateError> {
        let parsed = parser::Parser::new(src, options.limits.max_depth).parse_template()?;
        let _ = parsed.ifchanged_count;
        Ok(Template {
            nodes: parsed.nodes,
            cycles: parsed.cycles,
            options: options.clone(),
            size_hint: AtomicUsize::new(src.len().min(options.limits.max_output_bytes)),
        })
    }

    /// Render against `ctx`.
    pub fn render(&self, ctx: &Context<'_>) -> Result<String, RenderError> {
        let hint = self.size_hint.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 8);
        self.render_into(ctx, &mut out)?;
        if out.len() > hint {
            self.size_hint.fetch_max(out.len(), Ordering::Relaxed);
        }
        Ok(out)
    }

    /// Render, appending to `out` (lets callers reuse one buffer).
    pub fn render_into(&self, ctx: &Context<'_>, out: &mut String) -> Result<(), RenderError> {
        let mut r = render::Renderer::new(self, ctx);
        r.render_nodes(&self.nodes, out)?;
        if out.len() > self.options.limits.max_output_bytes {
            return Err(RenderError::OutputTooLarge(
                self.options.limits.max_output_bytes,
            ));
        }
        Ok(())
    }

    /// The options this template was compiled with.
    pub fn options(&self) -> &Options {
        &self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Template>();
    }
}
