//! `outflow template render|cases`: a thin CLI over `outflow_template`.
//! The system clock is read here (never inside the template crate).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use outflow_template::cases::{context_from_json, run_jsonl};
use outflow_template::{Options, Template};

/// Arguments of `outflow template render FILE --context CONTEXT.json`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Template file to render.
    pub file: PathBuf,
    /// JSON object used as the render context (`{"$datetime": …}` / `{"$date": …}` become dates).
    #[arg(long, value_name = "CONTEXT.json")]
    pub context: PathBuf,
    /// HTML-escape variable output (Django's default; off suits JSON bodies).
    #[arg(long)]
    pub autoescape: bool,
    /// Text printed for variables that do not resolve (`%s` = the variable name).
    #[arg(long, default_value = "")]
    pub string_if_invalid: String,
    /// Render N times and report renders per second on stderr.
    #[arg(long, default_value_t = 1)]
    pub repeat: u64,
}

fn system_now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Compile and render a template file, printing the result.
pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    let src = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading template {}", args.file.display()))?;
    let p = &args.context;
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading context {}", p.display()))?;
    let data: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing context {}", p.display()))?;
    let empty = serde_json::Map::new();
    let map = data.as_object().unwrap_or(&empty);
    let options = Options {
        autoescape: args.autoescape,
        string_if_invalid: args.string_if_invalid.clone(),
        ..Options::default()
    };
    let template = Template::compile(&src, &options)?;
    let mut ctx = context_from_json(map);
    ctx.set_now(system_now());
    let out = template.render(&ctx)?;
    let repeat = args.repeat.max(1);
    if repeat > 1 {
        let start = Instant::now();
        let mut buf = String::with_capacity(out.len());
        for _ in 0..repeat {
            buf.clear();
            template.render_into(&ctx, &mut buf)?;
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{repeat} renders in {secs:.3} s: {:.0} renders/s ({:.2} us/render)",
            repeat as f64 / secs,
            secs * 1e6 / repeat as f64
        );
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Run a JSONL file of conformance cases, one JSON result line per case.
pub fn cases(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    for result in run_jsonl(&text, Some(system_now())) {
        writeln!(stdout, "{}", result.to_json())?;
    }
    Ok(())
}
