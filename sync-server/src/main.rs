//! `doorstep-sync-server`: serve, create enrolment QR codes, revoke devices.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use doorstep_sync_server::console::{check_account, check_scope, hash_password, scope_suffix};
use doorstep_sync_server::registry::command::{export_to, import_file, rate};
use doorstep_sync_server::registry::formats::Format;
use doorstep_sync_server::state::{AppState, create_enrolment, create_export_token};
use doorstep_sync_server::storage::{Operator, Role, Storage};
use doorstep_sync_server::store::{Store, StoreOptions};
use tracing_subscriber::EnvFilter;

/// The server's allocator: Automerge builds and drops many small objects for every household
/// it loads, merges and saves (docs/adr/0009-server-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Unix seconds now: the command line's clock.
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

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
    /// Database connections this process keeps at most (default: 4 on SQLite, plus its one writer; 16 on PostgreSQL).
    #[arg(long, env = "DOORSTEP_DB_MAX_CONNECTIONS", global = true)]
    max_connections: Option<u32>,
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
        /// The URL devices use to reach this server (written into enrolment codes): https://,
        /// through the TLS proxy in front of this process. Defaults to http://<listen address>,
        /// which needs --insecure-http.
        #[arg(long)]
        public_url: Option<String>,
        /// Allow an http:// public URL: devices then send credentials and residents' data in
        /// clear text. For a local demo or test only; phones accept http:// to loopback only.
        #[arg(long)]
        insecure_http: bool,
        /// The address of a TLS proxy in front of this server, whose X-Forwarded-For names the
        /// client (for per-address limits). Repeat for several. Without it, limits count the peer.
        #[arg(long)]
        trusted_proxy: Vec<std::net::IpAddr>,
        /// How long an enrolment code works after it is made, in hours.
        #[arg(long, default_value_t = 72)]
        enrolment_ttl_hours: u32,
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
    /// Record linkage (duplicate residents): re-score the queue, or calibrate the model.
    Linkage {
        #[command(subcommand)]
        action: LinkageCommand,
    },
    /// Preload an area's residents from the registry's file (docs/REGISTRY.md): JSON Lines
    /// (one household a line) or CSV (one resident a row). Idempotent; refused rows go to a report.
    Import {
        /// The area the households lie in (with its sub-areas).
        #[arg(long)]
        area: String,
        /// jsonl or csv (default: from the file's extension).
        #[arg(long)]
        format: Option<String>,
        /// Where to write the refused rows (default: <file>.report.csv).
        #[arg(long)]
        report: Option<PathBuf>,
        /// The registry's file.
        file: PathBuf,
    },
    /// Export the households of an area changed since a cursor (docs/REGISTRY.md), then print
    /// the next cursor.
    Export {
        /// The area to export (with its sub-areas).
        #[arg(long)]
        area: String,
        /// The cursor a previous export printed (default: everything).
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Where to write (default: standard output; the cursor then goes to standard error).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Tokens of the export API (GET /v1/export/households): read-only, bound to an area.
    ExportToken {
        #[command(subcommand)]
        action: ExportTokenCommand,
    },
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

#[derive(Subcommand)]
enum ExportTokenCommand {
    /// Create a token; its secret is printed once and stored hashed.
    Create {
        /// The area it may export (with its sub-areas).
        #[arg(long)]
        area: String,
        /// What it is for (the integration job's name).
        #[arg(long)]
        label: String,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The token's id (not its secret).
        id: String,
    },
    /// List tokens.
    List,
}

#[derive(Subcommand)]
enum LinkageCommand {
    /// Re-score the open duplicate candidates with this version's model (decided candidates keep
    /// their decision; those the model no longer queues are withdrawn). The server also does this
    /// by itself at start-up after an upgrade that changes the model.
    Rescore {
        /// Also rebuild every resident's blocking keys (after a change of blocking rules).
        #[arg(long)]
        reindex: bool,
    },
    /// Find the candidates of labelled households in memory, as the server would, and report the
    /// model's precision and recall, the pairs it missed and the false pairs. Needs no database.
    Evaluate {
        /// Households, one JSON object a line.
        households: PathBuf,
        /// Known true pairs: `household/member<TAB>household/member[<TAB>kind]` a line.
        #[arg(long)]
        truth: PathBuf,
        /// Parameters to evaluate (default: the shipped model).
        #[arg(long)]
        params: Option<PathBuf>,
    },
    /// Estimate the model's parameters (u from random pairs of the data, m from known true pairs,
    /// name frequencies) and write them as JSON. Needs no database.
    Calibrate {
        /// Households, one JSON object a line (bench/gen_linkage.py's format).
        households: PathBuf,
        /// Known true pairs: `household/member<TAB>household/member` a line.
        #[arg(long)]
        truth: PathBuf,
        /// Where to write the parameters.
        #[arg(long)]
        out: PathBuf,
        /// The version to name them.
        #[arg(long)]
        version: String,
        /// Random pairs sampled for the u-probabilities.
        #[arg(long, default_value_t = 5_000_000)]
        random_pairs: usize,
        /// Seed of the sampler.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Match probability at which a pair is queued for review.
        #[arg(long, default_value_t = 0.5)]
        review_threshold: f64,
        /// Match probability at which a pair is a likely duplicate.
        #[arg(long, default_value_t = 0.999)]
        likely_threshold: f64,
    },
}

/// Writes linkage parameters estimated from the data, or evaluates a model on labelled data; needs no store.
fn calibrate(command: LinkageCommand) -> Result<(), String> {
    use doorstep_core::identity::linkage::calibrate;
    if let LinkageCommand::Evaluate { households, truth, params } = command {
        let (records, pairs) =
            doorstep_sync_server::calibration::read(&households, &truth).map_err(|e| e.to_string())?;
        let model = match params {
            Some(p) => doorstep_core::identity::LinkageModel::from_json(
                &std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?,
            )
            .map_err(|e| e.to_string())?,
            None => doorstep_core::identity::LinkageModel::shipped().clone(),
        };
        let t = std::time::Instant::now();
        let plain: Vec<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
        let e = calibrate::evaluate(&records, &plain, &model);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "model {}: {} records, {} pairs compared, {} queued, {} true of {}: precision {:.3}, recall {:.3}, {} false pairs ({:.1} s)",
            model.version(),
            records.len(),
            e.compared,
            e.queued,
            e.true_positives,
            e.true_pairs,
            e.precision(),
            e.recall(),
            e.false_pairs.len(),
            t.elapsed().as_secs_f64()
        );
        let show = |i: usize| format!("{}/{} {:?}", records[i].household_id, records[i].member_id, records[i].key);
        for (a, b) in &e.missed {
            let kind = pairs.iter().find(|p| (p.a.min(p.b), p.a.max(p.b)) == (*a, *b)).map_or("", |p| p.kind.as_str());
            let s = model.score(&rec(&records[*a]), &rec(&records[*b]));
            let _ = writeln!(out, "missed [{kind}] p={:.3}\n  {}\n  {}", s.probability, show(*a), show(*b));
        }
        for (a, b) in e.false_pairs.iter().take(20) {
            let s = model.score(&rec(&records[*a]), &rec(&records[*b]));
            let _ = writeln!(out, "false p={:.3}\n  {}\n  {}", s.probability, show(*a), show(*b));
        }
        return Ok(());
    }
    let LinkageCommand::Calibrate {
        households,
        truth,
        out,
        version,
        random_pairs,
        seed,
        review_threshold,
        likely_threshold,
    } = command
    else {
        return Err("not a calibration".into());
    };
    let (records, pairs) = doorstep_sync_server::calibration::read(&households, &truth).map_err(|e| e.to_string())?;
    let options = calibrate::CalibrationOptions {
        random_pairs,
        seed,
        version,
        trained_on: format!(
            "{} ({} records), {} true pairs from {}, {random_pairs} random pairs (seed {seed})",
            households.file_name().unwrap_or_default().to_string_lossy(),
            records.len(),
            pairs.len(),
            truth.file_name().unwrap_or_default().to_string_lossy(),
        ),
        review_threshold,
        likely_threshold,
    };
    let pairs: Vec<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
    let params = calibrate::estimate(&records, &pairs, &options);
    doorstep_core::identity::LinkageModel::new(params.clone()).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&params).map_err(|e| e.to_string())?;
    std::fs::write(&out, json + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{} records, {} true pairs: parameters written to {}", records.len(), pairs.len(), out.display());
    Ok(())
}

fn rec(
    r: &doorstep_core::identity::linkage::calibrate::CalibrationRecord,
) -> doorstep_core::identity::PersonRecord<'_> {
    doorstep_core::identity::PersonRecord { key: &r.key, household_id: &r.household_id, area: &r.area }
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if let Command::Linkage { action: action @ (LinkageCommand::Calibrate { .. } | LinkageCommand::Evaluate { .. }) } =
        &mut cli.command
    {
        let action = std::mem::replace(action, LinkageCommand::Rescore { reindex: false });
        return match calibrate(action) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // RUST_LOG chooses; by default the server's own events. Automerge logs each change it
    // cannot apply yet at error level: the server already answers those as typed refusals.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,automerge=off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = tokio::runtime::Runtime::new().map_err(|e| e.to_string()).and_then(|runtime| {
        runtime.block_on(async {
            let storage = doorstep_sync_server::open_storage(
                &cli.db,
                cli.key_file.as_deref(),
                StoreOptions { max_connections: cli.max_connections },
                now(),
            )
            .await
            .map_err(|e| e.message)?;
            let outcome = run(cli, storage.clone()).await.map_err(|e| e.to_string());
            storage.close().await;
            outcome
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, storage: Arc<Store>) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Serve {
            listen,
            public_url,
            insecure_http,
            trusted_proxy,
            enrolment_ttl_hours,
            admin_token,
            demo,
            demo_communes,
            attachment_quota_mib,
        } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            let addr = listener.local_addr()?;
            let public_url = public_url.unwrap_or_else(|| format!("http://{addr}"));
            if !public_url.to_ascii_lowercase().starts_with("https://") && !insecure_http {
                return Err(format!(
                    "refusing to serve devices at {public_url}: credentials and residents' data would cross the \
                     network in clear text. Put a TLS proxy in front and pass --public-url https://…, or pass \
                     --insecure-http for a local demo"
                )
                .into());
            }
            // One write, and never a panic when nobody reads stdout any more (tests read the first line only).
            say(&format!(
                "doorstep-sync-server listening on {addr} (database {})\noperator console: http://{addr}/console/",
                redact(&cli.db)
            ));
            let mut state = AppState::new(storage.clone(), public_url, admin_token);
            state.attachment_quota = attachment_quota_mib.saturating_mul(1024 * 1024);
            state.enrolment_ttl_secs = i64::from(enrolment_ttl_hours) * 3600;
            state.limits = doorstep_sync_server::limits::Limits::new(trusted_proxy);
            let state = Arc::new(state);
            if let Some(path) = demo {
                let jsonl = std::fs::read_to_string(&path)?;
                let url = format!("http://{addr}");
                let rt = tokio::runtime::Handle::current();
                std::thread::spawn(move || {
                    match doorstep_sync_server::demo::seed_at(storage, &url, &jsonl, demo_communes, &rt) {
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
            add_operator(storage.as_ref(), &username, Role::Admin, "", "DOORSTEP_ADMIN_PASSWORD").await?;
        }
        Command::AddOperator { username, role, area } => {
            let role = Role::parse(&role).ok_or("the role is operator or admin")?;
            add_operator(storage.as_ref(), &username, role, &area, "DOORSTEP_OPERATOR_PASSWORD").await?;
        }
        Command::Enrol { area, url, out } => {
            doorstep_core::sync::protocol::check_server_url(&url)?;
            let state = AppState::new(storage, url, String::new());
            let code = create_enrolment(&state, &area).await?;
            std::fs::write(&out, doorstep_core::qr::encode_png(&code.to_qr_text(), 6)?)?;
            println!(
                "enrolment for area {area} written to {} (one use, within {} hours unless the server sets \
                 --enrolment-ttl-hours otherwise)",
                out.display(),
                doorstep_sync_server::state::DEFAULT_ENROLMENT_TTL_SECS / 3600
            );
        }
        Command::Revoke { device } => {
            if storage.revoke_device(device.clone(), now()).await? {
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
            let slip =
                doorstep_core::slip::Slip::for_household(&doc.read(), &heads, doorstep_core::vn_time::date(now()));
            std::fs::write(&out, doorstep_core::qr::encode_png(&slip.sign(state.slip_key().await?), 4)?)?;
            println!("verification slip of {household} written to {}", out.display());
        }
        Command::Linkage { action: LinkageCommand::Rescore { reindex } } => {
            let r = storage.rescore_duplicates(reindex).await?;
            println!(
                "linkage model {}: {} open candidates kept, {} withdrawn, {} residents re-indexed",
                doorstep_core::identity::LinkageModel::shipped().version(),
                r.kept,
                r.withdrawn,
                r.reindexed
            );
        }
        Command::Linkage { action: LinkageCommand::Calibrate { .. } | LinkageCommand::Evaluate { .. } } => {
            return Err("calibration runs without a store".into());
        }
        Command::Import { area, format, report, file } => {
            let area = doorstep_core::area::Area::parse(&area)?;
            let format = match format {
                Some(f) => Format::parse(&f).ok_or("the format is jsonl or csv")?,
                None => Format::of_path(&file),
            };
            let report = report.unwrap_or_else(|| {
                let mut p = file.clone().into_os_string();
                p.push(".report.csv");
                PathBuf::from(p)
            });
            let started = std::time::Instant::now();
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let s = import_file(storage.as_ref(), &area, &file, format, &report, now, progress)
                .await
                .map_err(|e| e as Box<dyn std::error::Error>)?;
            println!(
                "read {} households for {area}: {} new, {} changed, {} unchanged, {} refused ({})",
                s.read,
                s.created,
                s.updated,
                s.unchanged,
                s.refused,
                rate(s.read, started)
            );
            if s.refused > 0 {
                println!("refused rows, with their line and reason: {}", report.display());
            }
        }
        Command::Export { area, since, format, out } => {
            let area = doorstep_core::area::Area::parse(&area)?;
            let format = Format::parse(&format).ok_or("the format is jsonl or csv")?;
            let started = std::time::Instant::now();
            match out {
                Some(path) => {
                    let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    let (next, n) = export_to(storage.as_ref(), &area, since, format, file)
                        .await
                        .map_err(|e| e as Box<dyn std::error::Error>)?;
                    eprintln!("exported {n} households of {area} to {} ({})", path.display(), rate(n, started));
                    println!("{next}");
                }
                None => {
                    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
                    let (next, n) = export_to(storage.as_ref(), &area, since, format, stdout)
                        .await
                        .map_err(|e| e as Box<dyn std::error::Error>)?;
                    eprintln!("exported {n} households of {area} ({}); next cursor: {next}", rate(n, started));
                }
            }
        }
        Command::ExportToken { action } => match action {
            ExportTokenCommand::Create { area, label } => {
                let state = AppState::new(storage.clone(), String::new(), String::new());
                let (token, secret) = create_export_token(&state, &area, &label, "cli").await?;
                println!("export token {} for area {} ({}): {secret}", token.id, token.area, token.label);
                println!("It is shown once: keep it in the integration job's secrets.");
            }
            ExportTokenCommand::Revoke { id } => {
                if storage.revoke_export_token(id.clone(), now()).await? {
                    storage.log_event(now(), "cli".into(), format!("revoked export token {id}")).await?;
                    println!("revoked export token {id}");
                } else {
                    return Err(format!("no live export token {id}").into());
                }
            }
            ExportTokenCommand::List => {
                for t in storage.export_tokens().await? {
                    println!(
                        "{}  area {}  {}  by {}  created {}{}",
                        t.id,
                        t.area,
                        t.label,
                        t.created_by,
                        doorstep_core::vn_time::rfc3339(t.created_at),
                        t.revoked_at
                            .map(|r| format!("  revoked {}", doorstep_core::vn_time::rfc3339(r)))
                            .unwrap_or_default()
                    );
                }
            }
        },
        Command::Devices => {
            for d in storage.devices(String::new()).await? {
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
    storage: &dyn Storage,
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
