//! `doorstep-sync-server`: serve, create enrolment QR codes, revoke devices.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use doorstep_sync_server::api::{AppState, create_enrolment};
use doorstep_sync_server::storage::Storage;

#[derive(Parser)]
#[command(name = "doorstep-sync-server", version, about = "Doorstep sync server")]
struct Cli {
    /// Database: a SQLite file path (the embedded default), or a postgres:// URL.
    #[arg(long, env = "DOORSTEP_DB", default_value = "./data.db", global = true)]
    db: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the sync API.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: String,
        /// The URL devices use to reach this server (written into enrolment codes).
        #[arg(long)]
        public_url: Option<String>,
        /// Bearer token for the operators' API.
        #[arg(long, env = "DOORSTEP_ADMIN_TOKEN", default_value = "")]
        admin_token: String,
    },
    /// Create a one-time enrolment for an area and write its QR code as a PNG.
    Enrol {
        /// The area the device will serve.
        #[arg(long)]
        area: String,
        /// The URL devices use to reach the server.
        #[arg(long)]
        url: String,
        /// Where to write the PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a device: it is refused, and told to wipe itself, at its next sync.
    Revoke {
        /// The device id.
        device: String,
    },
    /// List devices.
    Devices,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Open the store before the runtime starts: the PostgreSQL client blocks.
    let result = doorstep_sync_server::open_storage(&cli.db).map_err(|e| e.to_string()).and_then(|storage| {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        runtime.block_on(run(cli, storage)).map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, storage: Arc<dyn Storage>) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Serve { listen, public_url, admin_token } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            let addr = listener.local_addr()?;
            let public_url = public_url.unwrap_or_else(|| format!("http://{addr}"));
            println!("doorstep-sync-server listening on {addr} (database {})", redact(&cli.db));
            let state = Arc::new(AppState::new(storage, public_url, admin_token));
            doorstep_sync_server::serve(listener, state).await?;
        }
        Command::Enrol { area, url, out } => {
            let state = AppState::new(storage, url, String::new());
            let code = create_enrolment(&state, &area).await?;
            std::fs::write(&out, doorstep_core::qr::encode_png(&code.to_qr_text(), 6)?)?;
            println!("enrolment for area {area} written to {} (one use)", out.display());
        }
        Command::Revoke { device } => {
            if storage.revoke_device(device.clone(), doorstep_sync_server::api::now()).await? {
                println!("revoked {device}");
            } else {
                return Err(format!("no active device {device}").into());
            }
        }
        Command::Devices => {
            for d in storage.devices().await? {
                println!(
                    "{}  area {}  last sync {:?}  revoked {:?}",
                    d.device_id, d.area, d.last_sync_at, d.revoked_at
                );
            }
        }
    }
    Ok(())
}

/// A database URL without its password, for logs.
fn redact(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &db[..scheme], &db[at + 1..]),
        _ => db.to_string(),
    }
}
