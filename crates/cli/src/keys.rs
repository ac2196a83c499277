//! `baton keys`: manage the function keys `baton serve` checks.
//!
//! Keys live in the key file (`.baton/keys.json` by default) as SHA-256 hashes. A new key is
//! printed once, when it is created, and never again. `baton serve` reads the file at start-up,
//! so restart the server after a change.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use baton_host::Keys;

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// The key file.
    #[arg(
        long,
        env = "BATON_KEYS",
        default_value = ".baton/keys.json",
        global = true
    )]
    keys: PathBuf,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// List key names (never the keys).
    List,
    /// Create a key and print it once.
    Create {
        /// The function the key opens; omit with --host for a host key.
        #[arg(long, conflicts_with = "host", required_unless_present = "host")]
        function: Option<String>,
        /// A host (admin) key: opens every route.
        #[arg(long)]
        host: bool,
        /// The key's name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Revoke a key by name.
    Revoke {
        #[arg(long, conflicts_with = "host", required_unless_present = "host")]
        function: Option<String>,
        #[arg(long)]
        host: bool,
        #[arg(long)]
        name: String,
    },
}

pub fn keys(args: &KeysArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton keys: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &KeysArgs) -> Result<(), String> {
    let mut keys = Keys::load(&args.keys).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    match &args.command {
        KeysCommand::List => {
            let _ = writeln!(
                out,
                "{:<10} {:<24} {:<20} CREATED",
                "SCOPE", "FUNCTION", "NAME"
            );
            for k in &keys.host {
                let _ = writeln!(
                    out,
                    "{:<10} {:<24} {:<20} {}",
                    "host", "*", k.name, k.created
                );
            }
            for (f, list) in &keys.functions {
                for k in list {
                    let _ = writeln!(
                        out,
                        "{:<10} {:<24} {:<20} {}",
                        "function", f, k.name, k.created
                    );
                }
            }
        }
        KeysCommand::Create { function, name, .. } => {
            let now = baton_engine::Clock::new().now().to_rfc3339();
            let key = keys
                .create(function.as_deref(), name, &now)
                .map_err(|e| e.to_string())?;
            keys.save(&args.keys).map_err(|e| e.to_string())?;
            let _ = writeln!(out, "{key}");
            eprintln!(
                "Created key `{name}`; it is shown only now. Restart `baton serve` to use it."
            );
        }
        KeysCommand::Revoke { function, name, .. } => {
            keys.revoke(function.as_deref(), name)
                .map_err(|e| e.to_string())?;
            keys.save(&args.keys).map_err(|e| e.to_string())?;
            eprintln!("Revoked key `{name}`. Restart `baton serve` to apply.");
        }
    }
    Ok(())
}
