//! Transfer requests: a device asks to move a household out of its areas; an operator
//! whose scope covers both areas decides. The reason is sealed (it may name residents).

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::super::dialect::within_or_all;
use super::super::model::TransferRow;
use super::{Result, Tx};

const COLUMNS: &str = "id, device_id, request_id, doc_id, from_area, to_area, username, reason, status, note, created_at, decided_by, decided_at";

impl Tx<'_> {
    fn transfer_row(&self, r: &AnyRow) -> Result<TransferRow> {
        let id: i64 = r.try_get(0)?;
        let device_id: String = r.try_get(1)?;
        let request_id: String = r.try_get(2)?;
        let sealed: String = r.try_get(7)?;
        let reason = self.keys.open_text("transfer", &device_id, &request_id, &sealed)?;
        Ok(TransferRow {
            id,
            device_id,
            request_id,
            doc_id: r.try_get(3)?,
            from_area: r.try_get(4)?,
            to_area: r.try_get(5)?,
            username: r.try_get(6)?,
            reason,
            status: r.try_get(8)?,
            note: r.try_get(9)?,
            created_at: r.try_get(10)?,
            decided_by: r.try_get(11)?,
            decided_at: r.try_get(12)?,
        })
    }

    /// A device's transfer request, by the device's id for it.
    pub async fn transfer_of_device(&mut self, device_id: &str, request_id: &str) -> Result<Option<TransferRow>> {
        let sql = format!("SELECT {COLUMNS} FROM transfer WHERE device_id = $1 AND request_id = $2");
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(device_id).bind(request_id).fetch_optional(&mut *self.tx).await?;
        row.map(|r| self.transfer_row(&r)).transpose()
    }

    /// Whether a transfer of this household waits for an operator.
    pub async fn transfer_pending_for(&mut self, doc_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM transfer WHERE doc_id = $1 AND status = 'pending' LIMIT 1")
            .bind(doc_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.is_some())
    }

    /// A transfer request, by the server's id for it.
    pub async fn transfer(&mut self, id: i64) -> Result<Option<TransferRow>> {
        let sql = format!("SELECT {COLUMNS} FROM transfer WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *self.tx).await?;
        row.map(|r| self.transfer_row(&r)).transpose()
    }

    /// Records a device's new transfer request (a repeat of one it already made changes
    /// nothing).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_transfer(
        &mut self,
        device_id: &str,
        request_id: &str,
        doc_id: &str,
        from_area: &str,
        to_area: &str,
        username: &str,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        let sealed = self.keys.seal_text("transfer", device_id, request_id, reason)?;
        sqlx::query(
            "INSERT INTO transfer (device_id, request_id, doc_id, from_area, to_area, username, reason, status,
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)
             ON CONFLICT (device_id, request_id) DO NOTHING",
        )
        .bind(device_id)
        .bind(request_id)
        .bind(doc_id)
        .bind(from_area)
        .bind(to_area)
        .bind(username)
        .bind(sealed)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Transfer requests in `status` whose both areas lie within `scope` (empty: every
    /// area), newest first, at most `limit`.
    pub async fn transfers(&mut self, status: &str, scope: &str, limit: i64) -> Result<Vec<TransferRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM transfer WHERE status = $1 AND {} AND {} ORDER BY id DESC LIMIT $3",
            within_or_all("from_area", "$2", scope),
            within_or_all("to_area", "$2", scope),
        );
        let rows =
            sqlx::query(AssertSqlSafe(sql)).bind(status).bind(scope).bind(limit).fetch_all(&mut *self.tx).await?;
        rows.iter().map(|r| self.transfer_row(r)).collect()
    }

    /// Records an operator's decision on a pending request; false if it was no longer pending.
    pub async fn decide_transfer(&mut self, id: i64, status: &str, note: &str, by: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE transfer SET status = $2, note = $3, decided_by = $4, decided_at = $5
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(note)
        .bind(by)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
