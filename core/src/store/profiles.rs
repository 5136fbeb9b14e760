//! User profiles: each wraps the device data key under its own PIN.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::crypto::{DataKey, KdfParams, Salt, WrappedKey, derive_kek};
use crate::error::{Error, Result};

/// What a profile may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A police officer: everything.
    Officer,
    /// A village helper: registers new households, cannot list or open others'.
    Helper,
}

impl Role {
    pub(crate) fn as_sql(self) -> &'static str {
        match self {
            Role::Officer => "officer",
            Role::Helper => "helper",
        }
    }

    pub(crate) fn from_sql(s: &str) -> Result<Role> {
        match s {
            "officer" => Ok(Role::Officer),
            "helper" => Ok(Role::Helper),
            other => Err(Error::corrupt(format!("profile role {other:?}"))),
        }
    }
}

/// A profile as the unlock screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    /// Random id.
    pub profile_id: String,
    /// The name the user picks on the unlock screen. Not citizen data.
    pub label: String,
    /// Role.
    pub role: Role,
    /// Whether unlocking needs the platform secret too.
    pub uses_platform_secret: bool,
}

/// Fewest characters in a PIN.
pub const MIN_PIN_LEN: usize = 4;
/// Wrong PINs allowed before backoff starts.
pub const FREE_ATTEMPTS: u32 = 3;
/// Longest lockout, in seconds.
pub const MAX_LOCKOUT_SECS: i64 = 3600;

/// Seconds a profile stays locked after `failed` consecutive wrong PINs.
pub fn lockout_secs(failed: u32) -> i64 {
    if failed < FREE_ATTEMPTS {
        return 0;
    }
    let exp = (failed - FREE_ATTEMPTS).min(16);
    (30i64 << exp).min(MAX_LOCKOUT_SECS)
}

pub(crate) struct ProfileRow {
    pub info: ProfileInfo,
    pub salt: Salt,
    pub kdf: KdfParams,
    pub wrapped: WrappedKey,
    pub failed_attempts: u32,
    pub locked_until: i64,
}

pub(crate) fn check_pin(pin: &str) -> Result<()> {
    if pin.chars().count() < MIN_PIN_LEN {
        return Err(Error::InvalidArgument(format!("a PIN needs at least {MIN_PIN_LEN} characters")));
    }
    Ok(())
}

pub(crate) fn wrap_aad(profile_id: &str) -> Vec<u8> {
    format!("doorstep/profile/{profile_id}").into_bytes()
}

pub(crate) fn load_row(conn: &rusqlite::Connection, label: &str) -> Result<ProfileRow> {
    conn.query_row(
        "SELECT profile_id, label, role, salt, kdf_m_kib, kdf_t, kdf_p, uses_platform_secret,
                wrapped_dek, failed_attempts, locked_until
         FROM profile WHERE label = ?1 OR profile_id = ?1",
        [label],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                KdfParams { m_kib: r.get(4)?, t: r.get(5)?, p: r.get(6)? },
                r.get::<_, bool>(7)?,
                r.get::<_, Vec<u8>>(8)?,
                r.get::<_, u32>(9)?,
                r.get::<_, i64>(10)?,
            ))
        },
    )
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("profile {label}")))
    .and_then(|(id, label, role, salt, kdf, secret, wrapped, failed, locked)| {
        let salt: [u8; 16] = salt.try_into().map_err(|_| Error::corrupt(format!("profile {id} salt")))?;
        Ok(ProfileRow {
            info: ProfileInfo { profile_id: id, label, role: Role::from_sql(&role)?, uses_platform_secret: secret },
            salt: Salt(salt),
            kdf,
            wrapped: WrappedKey(wrapped),
            failed_attempts: failed,
            locked_until: locked,
        })
    })
}

pub(crate) fn list(conn: &rusqlite::Connection) -> Result<Vec<ProfileInfo>> {
    let mut stmt = conn.prepare("SELECT profile_id, label, role, uses_platform_secret FROM profile ORDER BY label")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (profile_id, label, role, uses_platform_secret) = row?;
        out.push(ProfileInfo { profile_id, label, role: Role::from_sql(&role)?, uses_platform_secret });
    }
    Ok(out)
}

/// Wraps `dek` for a PIN and writes the profile row (insert or replace).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_row(
    conn: &rusqlite::Connection,
    info: &ProfileInfo,
    dek: &DataKey,
    pin: &str,
    platform_secret: Option<&[u8]>,
    kdf: KdfParams,
    now: i64,
) -> Result<()> {
    let salt = Salt::make()?;
    let kek = derive_kek(pin, platform_secret, &salt, kdf)?;
    let wrapped = dek.wrap(&kek, &wrap_aad(&info.profile_id))?;
    conn.execute(
        "INSERT INTO profile (profile_id, label, role, salt, kdf_m_kib, kdf_t, kdf_p, uses_platform_secret,
                              wrapped_dek, failed_attempts, locked_until, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?10)
         ON CONFLICT (profile_id) DO UPDATE SET salt = excluded.salt, kdf_m_kib = excluded.kdf_m_kib,
             kdf_t = excluded.kdf_t, kdf_p = excluded.kdf_p, uses_platform_secret = excluded.uses_platform_secret,
             wrapped_dek = excluded.wrapped_dek, failed_attempts = 0, locked_until = 0",
        params![
            info.profile_id,
            info.label,
            info.role.as_sql(),
            salt.0.as_slice(),
            kdf.m_kib,
            kdf.t,
            kdf.p,
            platform_secret.is_some(),
            wrapped.0,
            now
        ],
    )?;
    Ok(())
}

/// Checks a PIN against a profile, with persisted throttling. Returns the data key.
pub(crate) fn verify_pin(
    conn: &rusqlite::Connection,
    row: &ProfileRow,
    pin: &str,
    platform_secret: Option<&[u8]>,
    now: i64,
) -> Result<DataKey> {
    if row.locked_until > now {
        return Err(Error::Throttled { retry_after_secs: (row.locked_until - now) as u64 });
    }
    if row.info.uses_platform_secret && platform_secret.is_none() {
        return Err(Error::InvalidArgument("this profile needs the platform secret".into()));
    }
    let kek = derive_kek(pin, platform_secret, &row.salt, row.kdf)?;
    match DataKey::unwrap_with(&row.wrapped, &kek, &wrap_aad(&row.info.profile_id)) {
        Some(dek) => {
            if row.failed_attempts > 0 {
                conn.execute(
                    "UPDATE profile SET failed_attempts = 0, locked_until = 0 WHERE profile_id = ?1",
                    [&row.info.profile_id],
                )?;
            }
            Ok(dek)
        }
        None => {
            let failed = row.failed_attempts.saturating_add(1);
            let lock = lockout_secs(failed);
            conn.execute(
                "UPDATE profile SET failed_attempts = ?2, locked_until = ?3 WHERE profile_id = ?1",
                params![row.info.profile_id, failed, if lock > 0 { now + lock } else { 0 }],
            )?;
            Err(Error::WrongPin { failed_attempts: failed })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!((lockout_secs(1), lockout_secs(2)), (0, 0));
        assert_eq!(lockout_secs(3), 30);
        assert_eq!(lockout_secs(4), 60);
        assert_eq!(lockout_secs(5), 120);
        assert_eq!(lockout_secs(50), MAX_LOCKOUT_SECS);
        assert_eq!(lockout_secs(u32::MAX), MAX_LOCKOUT_SECS);
    }
}
