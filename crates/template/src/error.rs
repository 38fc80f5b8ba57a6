//! Error types: compile-time errors carry a position so users can fix their
//! template; render-time errors name the Python exception Django would raise.

use thiserror::Error;

/// A template failed to compile (Django's `TemplateSyntaxError`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("TemplateSyntaxError at line {line}, column {column}: {message}")]
pub struct TemplateError {
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// Human-readable explanation.
    pub message: String,
}

/// A compiled template failed while rendering.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    /// A filter argument or tag argument named a variable that does not exist.
    #[error("VariableDoesNotExist: {0}")]
    VariableDoesNotExist(String),
    /// Python would raise `TypeError` (e.g. iterating over a number).
    #[error("TypeError: {0}")]
    TypeError(String),
    /// Python would raise `ValueError` (e.g. a for-loop unpacking mismatch).
    #[error("ValueError: {0}")]
    ValueError(String),
    /// A tag argument was invalid in a way Django only detects while rendering.
    #[error("TemplateSyntaxError: {0}")]
    TemplateSyntax(String),
    /// The output grew past `Limits::max_output_bytes`.
    #[error("render limit exceeded: output larger than {0} bytes")]
    OutputTooLarge(usize),
    /// More work than `Limits::max_steps` (loop iterations and node renders).
    #[error("render limit exceeded: more than {0} steps")]
    TooManySteps(u64),
    /// Nested rendering deeper than `Limits::max_depth`.
    #[error("render limit exceeded: nesting deeper than {0}")]
    TooDeep(usize),
    /// A tag or filter needs the current time but the context carries none.
    #[error("no current time in the render context (set Context::with_now)")]
    NoClock,
}

impl RenderError {
    /// The Python exception class name Django would report, for conformance output.
    pub fn kind(&self) -> &'static str {
        match self {
            RenderError::VariableDoesNotExist(_) => "VariableDoesNotExist",
            RenderError::TypeError(_) => "TypeError",
            RenderError::ValueError(_) => "ValueError",
            RenderError::TemplateSyntax(_) => "TemplateSyntaxError",
            RenderError::OutputTooLarge(_)
            | RenderError::TooManySteps(_)
            | RenderError::TooDeep(_) => "LimitExceeded",
            RenderError::NoClock => "NoClock",
        }
    }
}
