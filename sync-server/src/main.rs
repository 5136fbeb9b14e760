//! `doorstep-sync-server`: serve, create enrolment QR codes, revoke devices.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use doorstep_sync_server::api::now;
use doorstep_sync_server::api::{AppState, create_enrolment};
use doorstep_sync_server::console::{check_account, check_scope, hash_password, scope_suffix};
use doorstep_sync_server::storage::{Operator, Role, Storage};

#[derive(Parser)]
#[command(name = "doorstep-sync-server", version, about = "Doorstep sync server")]
struct Cli {
    /// Database: a SQLite file path (the embedded default), or a postgres:// URL.
    #[arg(long, env = "DOORSTEP_DB", default_value = "./data.db", global = true)]
    db: String,
    /// The server key that seals residents' data at rest: a file of 64 hex digits, created
    /// (mode 0600) when missing. Defaults to `<db>.key` beside a SQLite file; a PostgreSQL
    /// store needs it named, the same file on every node. Keep a copy: without it the data is lost.
    #[arg(long, env = "DOORSTEP_KEY_FILE", global = true)]
    key_file: Option<PathBuf>,
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
        /// Bearer token for the operators' JSON API (the web console uses accounts instead).
        #[arg(long, env = "DOORSTEP_ADMIN_TOKEN", default_value = "")]
        admin_token: String,
        /// Seed a demo registry once serving: phones of several communes sync the households
        /// of this file (one JSON object a line, as bench/gen_households.py writes them).
        #[arg(long)]
        demo: Option<PathBuf>,
        /// Communes in the demo.
        #[arg(long, default_value_t = 3)]
        demo_communes: usize,
        /// Attachment storage each device may use on the server, in MiB.
        #[arg(long, default_value_t = 512)]
        attachment_quota_mib: u64,
    },
    /// Create the first admin account of the web console (or reset an account's password).
    /// The password comes from DOORSTEP_ADMIN_PASSWORD, or is asked for.
    CreateAdmin {
        /// Login name.
        #[arg(long, default_value = "admin")]
        username: String,
    },
    /// Create an operator account of the web console. The password comes from
    /// DOORSTEP_OPERATOR_PASSWORD, or is asked for.
    AddOperator {
        /// Login name.
        #[arg(long)]
        username: String,
        /// operator or admin.
        #[arg(long, default_value = "operator")]
        role: String,
        /// The area the operator works on, with its sub-areas (default: every area).
        #[arg(long, default_value = "")]
        area: String,
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
    /// Write a household's signed verification slip QR code as a PNG (the console prints the whole slip).
    Slip {
        /// Household id.
        #[arg(long)]
        household: String,
        /// Where to write the PNG.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Open the store before the runtime starts: the PostgreSQL client blocks.
    let result = doorstep_sync_server::open_storage(&cli.db, cli.key_file.as_deref()).map_err(|e| e.message).and_then(
        |storage| {
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            runtime.block_on(run(cli, storage)).map_err(|e| e.to_string())
        },
    );
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
        Command::Serve { listen, public_url, admin_token, demo, demo_communes, attachment_quota_mib } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            let addr = listener.local_addr()?;
            let public_url = public_url.unwrap_or_else(|| format!("http://{addr}"));
            // One write, and never a panic when nobody reads stdout any more (tests read the first line only).
            say(&format!(
                "doorstep-sync-server listening on {addr} (database {})\noperator console: http://{addr}/console/",
                redact(&cli.db)
            ));
            let mut state = AppState::new(storage.clone(), public_url, admin_token);
            state.attachment_quota = attachment_quota_mib.saturating_mul(1024 * 1024);
            let state = Arc::new(state);
            if let Some(path) = demo {
                let jsonl = std::fs::read_to_string(&path)?;
                let url = format!("http://{addr}");
                std::thread::spawn(move || {
                    match doorstep_sync_server::demo::seed_at(storage, &url, &jsonl, demo_communes) {
                        Ok(s) => println!(
                            "demo ready: {} devices, {} households, {} open conflicts, {} open duplicates",
                            s.devices, s.households, s.conflicts, s.duplicates
                        ),
                        Err(e) => println!("demo failed: {e}"),
                    }
                });
            }
            doorstep_sync_server::serve(listener, state).await?;
        }
        Command::CreateAdmin { username } => {
            add_operator(&storage, &username, Role::Admin, "", "DOORSTEP_ADMIN_PASSWORD").await?;
        }
        Command::AddOperator { username, role, area } => {
            let role = Role::parse(&role).ok_or("the role is operator or admin")?;
            add_operator(&storage, &username, role, &area, "DOORSTEP_OPERATOR_PASSWORD").await?;
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
        Command::Slip { household, out } => {
            let (snapshot, heads) = storage.household(household.clone()).await?.ok_or("no such household")?;
            let editor = doorstep_sync_server::merge::server_editor("cli");
            let doc = doorstep_core::record::HouseholdDoc::load(&household, &snapshot, &editor)?;
            let state = AppState::new(storage.clone(), String::new(), String::new());
            let slip = doorstep_core::slip::Slip::for_household(&doc.read(), &heads, chrono::Utc::now().date_naive());
            std::fs::write(&out, doorstep_core::qr::encode_png(&slip.sign(state.slip_key().await?), 4)?)?;
            println!("verification slip of {household} written to {}", out.display());
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

/// Creates (or resets) a console account with a password from `env`, or asked for.
async fn add_operator(
    storage: &Arc<dyn Storage>,
    username: &str,
    role: Role,
    area: &str,
    env: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let password = match std::env::var(env) {
        Ok(p) => p,
        Err(_) => {
            let p = rpassword::prompt_password(format!("Password for {username}: "))?;
            if rpassword::prompt_password("Again: ")? != p {
                return Err("the passwords differ".into());
            }
            p
        }
    };
    check_account(username, &password)?;
    let area = check_scope(role, area)?;
    let existed = storage.operator(username.to_string()).await?.is_some();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
    let scope = scope_suffix(&area);
    storage
        .put_operator(Operator { username: username.to_string(), password_hash, role, area, created_at: now() })
        .await?;
    let what = if existed { "updated" } else { "created" };
    storage.log_event(now(), "cli".into(), format!("{what} account {username} ({}{scope})", role.as_str())).await?;
    println!("{} account {username}{scope} {what}", role.as_str());
    Ok(())
}

/// Prints a line to stdout, ignoring a closed pipe.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A database URL without its password, for logs.
fn redact(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &db[..scheme], &db[at + 1..]),
        _ => db.to_string(),
    }
}
