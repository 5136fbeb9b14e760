//! Opening the database: PRAGMAs, then versioned migrations.
//!
//! Follows application-services' `open_database`: prepare (PRAGMAs), init
//! (a new file gets the latest schema), upgrade (one `match` arm per
//! version), finish. The version lives in `PRAGMA user_version`.
//!
//! PRAGMAs, and why:
//! - `journal_mode=WAL`: readers never block the writer; one fsync per commit.
//! - `synchronous=FULL`: a save that returned Ok survives a crash or power cut.
//! - `foreign_keys=ON`: chunks and index rows cannot outlive their document.
//! - `temp_store=MEMORY`: no temp files on disk (and Android has no temp dir: SQLITE_IOERR_GETTEMPPATH).
//! - `secure_delete=ON`: freed pages are zeroed, so old ciphertext and index tokens do not linger.

use rusqlite::{Connection, Transaction};

use crate::error::{Error, Result};

/// The schema version this build writes.
pub const LATEST_VERSION: u32 = 5;

const V1: &str = "
CREATE TABLE device (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE profile (
    profile_id TEXT PRIMARY KEY,
    label TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('officer', 'helper')),
    salt BLOB NOT NULL,
    kdf_m_kib INTEGER NOT NULL,
    kdf_t INTEGER NOT NULL,
    kdf_p INTEGER NOT NULL,
    uses_platform_secret INTEGER NOT NULL,
    wrapped_dek BLOB NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE doc_meta (
    doc_id TEXT PRIMARY KEY,
    area TEXT NOT NULL,
    created_by TEXT NOT NULL,
    summary BLOB NOT NULL,
    local_heads TEXT NOT NULL,
    dirty INTEGER NOT NULL,
    snapshot_bytes INTEGER NOT NULL,
    incremental_bytes INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX doc_meta_by_update ON doc_meta (updated_at DESC, doc_id);
CREATE INDEX doc_meta_by_creator ON doc_meta (created_by, updated_at DESC, doc_id);
CREATE TABLE doc_chunk (
    doc_id TEXT NOT NULL REFERENCES doc_meta (doc_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'incremental')),
    sealed BLOB NOT NULL,
    PRIMARY KEY (doc_id, seq)
) WITHOUT ROWID;
CREATE TABLE blind_index (
    token BLOB NOT NULL,
    doc_id TEXT NOT NULL REFERENCES doc_meta (doc_id) ON DELETE CASCADE,
    PRIMARY KEY (token, doc_id)
) WITHOUT ROWID;
CREATE INDEX blind_index_by_doc ON blind_index (doc_id);
";

/// v2 prepares sync: the heads the server acknowledged, per document, and a
/// key-value table for the device's sync cursor and credentials.
const V1_TO_V2: &str = "
ALTER TABLE doc_meta ADD COLUMN synced_heads TEXT NOT NULL DEFAULT '';
CREATE TABLE sync_state (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// v3 keeps attachments: sealed blobs named by the hash of their plaintext,
/// with their content key sealed under the device data key. `blob` is NULL
/// for a photo this device knows of but has not downloaded; `uploaded` says
/// whether the server has it.
const V2_TO_V3: &str = "
CREATE TABLE attachment (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    sealed_key BLOB NOT NULL,
    blob BLOB,
    uploaded INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX attachment_to_upload ON attachment (uploaded) WHERE uploaded = 0;
";

/// v4 quarantines pulled changes that do not load (a tail without its base, a malformed
/// document): kept sealed as received, with the error, until a later pull lets them in.
const V3_TO_V4: &str = "
CREATE TABLE quarantine (
    doc_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    error TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (doc_id, seq)
) WITHOUT ROWID;
";

/// v5 keeps the device's transfer requests (a household moving out of its areas), with
/// the reason and the operator's note sealed, and each document's heads when the server last
/// acknowledged a push of it (`pushed_heads`: every change up to them is the server's).
const V4_TO_V5: &str = "
ALTER TABLE doc_meta ADD COLUMN pushed_heads TEXT NOT NULL DEFAULT '';
CREATE TABLE transfer_request (
    request_id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL,
    to_area TEXT NOT NULL,
    reason BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'refused')),
    note BLOB NOT NULL DEFAULT x'',
    created_at INTEGER NOT NULL,
    decided_at INTEGER
);
";

fn prepare(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA secure_delete = ON;",
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

fn upgrade_from(tx: &Transaction<'_>, version: u32) -> Result<()> {
    match version {
        1 => tx.execute_batch(V1_TO_V2)?,
        2 => tx.execute_batch(V2_TO_V3)?,
        3 => tx.execute_batch(V3_TO_V4)?,
        4 => tx.execute_batch(V4_TO_V5)?,
        other => return Err(Error::InvalidArgument(format!("no migration from schema version {other}"))),
    }
    Ok(())
}

/// Applies PRAGMAs and brings the schema to [`LATEST_VERSION`].
pub fn open_database(conn: &mut Connection) -> Result<()> {
    prepare(conn)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > LATEST_VERSION {
        return Err(Error::SchemaTooNew { found: version, supported: LATEST_VERSION });
    }
    if version == 0 {
        tx.execute_batch(V1)?;
        for v in 1..LATEST_VERSION {
            upgrade_from(&tx, v)?;
        }
    } else {
        for v in version..LATEST_VERSION {
            upgrade_from(&tx, v)?;
        }
    }
    tx.pragma_update(None, "user_version", LATEST_VERSION)?;
    tx.commit()?;
    Ok(())
}
