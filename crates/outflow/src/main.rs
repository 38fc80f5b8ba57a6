use anyhow::Context;
use clap::{Parser, Subcommand};
use outflow::config::{Config, Overrides};
use outflow::template_cmd;
use std::path::PathBuf;

/// The ingest path allocates many small JSON values per request; mimalloc
/// handles that churn across threads better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Outflow: customer-event automation with a Klaviyo-compatible API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (read if it exists).
    #[arg(
        long,
        global = true,
        default_value = "outflow.toml",
        env = "OUTFLOW_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the workers.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8484; env OUTFLOW_LISTEN]
        #[arg(long)]
        listen: Option<String>,
        /// sqlite://PATH or postgres://… [default: sqlite://./outflow-data/outflow.db; env OUTFLOW_DATABASE_URL]
        #[arg(long)]
        database: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[arg(long)]
        database: Option<String>,
    },
    /// Work with Django/Klaviyo templates.
    #[command(subcommand)]
    Template(TemplateCommand),
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Render a template file against a JSON context.
    Render(template_cmd::RenderArgs),
    /// Run conformance cases (JSON lines) and print one result line per case.
    Cases { file: PathBuf },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, database } => {
            let config = Config::load(
                &cli.config,
                &Overrides {
                    listen,
                    database_url: database,
                },
            )?;
            init_logging(&config.log);
            outflow::serve_runtime()?.block_on(outflow::serve(config, shutdown_signal()))
        }
        Command::Migrate { database } => {
            let config = Config::load(
                &cli.config,
                &Overrides {
                    listen: None,
                    database_url: database,
                },
            )?;
            init_logging(&config.log);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                outflow_store::Store::open(&config.database_url)
                    .await
                    .with_context(|| {
                        format!("migrating {}", outflow::redact(&config.database_url))
                    })?;
                println!("migrations applied");
                Ok(())
            })
        }
        Command::Template(TemplateCommand::Render(args)) => template_cmd::render(args),
        Command::Template(TemplateCommand::Cases { file }) => template_cmd::cases(&file),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: logs sent to files stay plain text.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
