//! # doorstep-sync-server
//!
//! The server Doorstep devices sync with: device enrolment by one-time QR
//! token, revocation, area-scoped replication of household Automerge
//! documents through a per-area change feed, conflict and duplicate review
//! queues, and an audit log. Storage sits behind [`storage::Storage`], served by one
//! implementation ([`store::Store`]) on SQLite, the embedded default, and on PostgreSQL,
//! which lets several stateless server processes share one database.
//! Either way, what identifies a resident is sealed at rest under a server key
//! kept outside the database ([`at_rest`]).

pub mod api;
pub mod at_rest;
pub mod calibration;
pub mod console;
pub mod demo;
pub mod error;
pub mod export_api;
pub mod limits;
pub mod logic;
pub mod merge;
pub mod moves;
pub mod registry;
pub mod review;
pub mod service;
pub mod state;
pub mod storage;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

pub use state::AppState;

/// Longest a whole request may take, body included, on any route: past it the server answers 503.
pub const ROUTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);
/// Longest a client may take to send a request body (a slow sender holds no worker for long).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The whole HTTP surface: the device protocol and operators' API ([`api`]) beside the console
/// ([`console`]). Every route has a body limit and timeouts.
pub fn router(state: Arc<AppState>) -> axum::Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
    let max_body = doorstep_core::sync::protocol::MAX_BODY_BYTES + 64 * 1024;
    api::routes()
        .merge(console::routes())
        .merge(export_api::routes())
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::SERVICE_UNAVAILABLE, ROUTE_TIMEOUT))
}

/// Serves on `listener` until the process is stopped, recording each connection's peer
/// address (per-address limits: [`limits`]).
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Answers go out as soon as they are written (no Nagle delay behind a delayed ACK).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>()).await
}

/// Binds `addr` (port 0 for an ephemeral port) and serves in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr, state_for: impl FnOnce(SocketAddr) -> AppState) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let state = Arc::new(state_for(local));
    tokio::spawn(async move {
        let _ = serve(listener, state).await;
    });
    Ok(local)
}

/// Opens the store a `--db` value names: a `postgres://` URL (TLS as its `sslmode` says),
/// or a SQLite file path, sealed under the key in `key_file` (created when missing; for a
/// SQLite file it defaults to `<file>.key`, a PostgreSQL store must name one). Brings
/// derived data up to date with this version.
pub async fn open_storage(
    db: &str,
    key_file: Option<&std::path::Path>,
    options: store::StoreOptions,
    now: i64,
) -> Result<Arc<store::Store>, store::StorageError> {
    let key_file = match key_file {
        Some(path) => path.to_path_buf(),
        None => at_rest::AtRest::default_key_file(db)?,
    };
    let keys = Arc::new(at_rest::AtRest::load_or_create(&key_file)?);
    let store = store::Store::open(db, keys, options).await?;
    store.catch_up(now).await?;
    let store = Arc::new(store);
    store.settle_in_background();
    store.keep_base_filter();
    Ok(store)
}
