//! Users of an account: argon2 password hashes, TOTP multi-factor
//! (RFC 6238), login throttling and sessions. Hashing is slow on purpose:
//! callers run it off the writer thread and hand the store the hash.

use crate::accounts::{self, Role};
use crate::db::{Conn, Row};
use crate::{new_ulid, params, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use totp_rs::{Secret, TOTP};

/// Argon2id cost. The default is argon2's recommended (19 MiB, 2 passes);
/// tests use [`PasswordCost::LOW`] so they stay fast. A stored hash
/// carries its own parameters, so changing the cost keeps old hashes valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl PasswordCost {
    pub const DEFAULT: PasswordCost = PasswordCost {
        memory_kib: Params::DEFAULT_M_COST,
        iterations: Params::DEFAULT_T_COST,
    };
    /// For tests only: far too cheap to resist guessing.
    pub const LOW: PasswordCost = PasswordCost {
        memory_kib: 64,
        iterations: 1,
    };
}

impl Default for PasswordCost {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// An argon2id PHC string for `password`, with a fresh salt.
pub fn hash_password(password: &str, cost: PasswordCost) -> Result<String, StoreError> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| StoreError::Invalid(format!("password hash parameters: {e}")))?;
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| StoreError::Invalid(format!("password salt: {e}")))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("password hash: {e}")))
}

/// Whether `password` matches a stored PHC string (its own parameters).
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

// ------------------------------------------------------------------ TOTP

/// TOTP period (seconds), digits, and accepted clock skew (steps each side).
const TOTP_STEP: u64 = 30;
const TOTP_DIGITS: usize = 6;
const TOTP_SKEW: i64 = 1;

/// A fresh TOTP secret (160 bits, RFC 4226's recommendation), base32.
pub fn generate_totp_secret() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn totp(secret_b32: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_owned()).to_bytes().ok()?;
    TOTP::new(totp_rs::Algorithm::SHA1, TOTP_DIGITS, 0, TOTP_STEP, bytes).ok()
}

/// The code for `secret` at `now` (microseconds): for tests and tools.
pub fn totp_code(secret_b32: &str, now: i64) -> Option<String> {
    let secs = u64::try_from(now.div_euclid(1_000_000)).ok()?;
    Some(totp(secret_b32)?.generate(secs))
}

/// The time step a `code` is valid for at `now`, within the skew, if it is
/// later than `last_step` (the last one accepted): a code is never
/// accepted twice, nor one older than an accepted one.
pub fn check_totp(secret_b32: &str, code: &str, now: i64, last_step: i64) -> Option<i64> {
    let t = totp(secret_b32)?;
    let code = code.trim();
    if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = now.div_euclid(1_000_000) / TOTP_STEP as i64;
    (step - TOTP_SKEW..=step + TOTP_SKEW)
        .filter(|s| *s > last_step && *s >= 0)
        .find(|s| t.check(code, *s as u64 * TOTP_STEP))
}

/// The `otpauth://` URI authenticator apps read (as a QR code, usually).
pub fn otpauth_uri(secret_b32: &str, label: &str) -> String {
    format!(
        "otpauth://totp/Outflow:{label}?secret={secret_b32}&issuer=Outflow&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP}"
    )
}

// ------------------------------------------------------------------ users

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub role: Role,
    pub mfa_enabled: bool,
    pub has_password: bool,
    pub created: i64,
    pub updated: i64,
}

const USER_COLUMNS: &str =
    "id, account_id, email, role, mfa_secret IS NOT NULL, password_hash IS NOT NULL, created, updated";

fn user(row: &Row) -> Result<User, StoreError> {
    let role = row.text(3)?;
    Ok(User {
        id: row.text(0)?,
        account_id: row.text(1)?,
        email: row.text(2)?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Invalid(format!("unknown role '{role}'")))?,
        mfa_enabled: row.bool(4)?,
        has_password: row.bool(5)?,
        created: row.int(6)?,
        updated: row.int(7)?,
    })
}

/// Emails are compared lower-cased and trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn create(
    conn: &mut dyn Conn,
    account: &str,
    email: &str,
    role: Role,
    password_hash: Option<&str>,
    now: i64,
) -> Result<User, StoreError> {
    let email = normalize_email(email);
    if conn
        .query_opt(
            "SELECT id FROM users WHERE account_id = $1 AND email = $2",
            params![account, &email],
        )?
        .is_some()
    {
        return Err(StoreError::Conflict(format!(
            "A user with email {email} already exists."
        )));
    }
    let id = new_ulid();
    conn.execute(
        "INSERT INTO users (id, account_id, email, role, password_hash, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        params![&id, account, &email, role.as_str(), password_hash, now],
    )?;
    get(conn, account, &id)?.ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

/// A user who has not been deleted.
pub fn get(conn: &mut dyn Conn, account: &str, id: &str) -> Result<Option<User>, StoreError> {
    conn.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE account_id = $1 AND id = $2 AND disabled IS NULL"),
        params![account, id],
    )?
    .as_ref()
    .map(user)
    .transpose()
}

/// The account's users, oldest first.
pub fn list(conn: &mut dyn Conn, account: &str) -> Result<Vec<User>, StoreError> {
    conn.query(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE account_id = $1 AND disabled IS NULL ORDER BY created, id"),
        params![account],
    )?
    .iter()
    .map(user)
    .collect()
}

/// How many owners the account has left (the last one cannot go).
pub fn owners(conn: &mut dyn Conn, account: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT COUNT(*) FROM users WHERE account_id = $1 AND role = 'owner' AND disabled IS NULL",
            params![account],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}

#[derive(Debug, Default, Clone)]
pub struct UserChange {
    pub email: Option<String>,
    pub role: Option<Role>,
    pub password_hash: Option<String>,
    /// Turns MFA off (and drops an enrolment in progress).
    pub reset_mfa: bool,
}

pub fn update(
    conn: &mut dyn Conn,
    account: &str,
    id: &str,
    change: UserChange,
    now: i64,
) -> Result<User, StoreError> {
    let current =
        get(conn, account, id)?.ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
    if let Some(email) = change.email {
        let email = normalize_email(&email);
        if email != current.email {
            if conn
                .query_opt(
                    "SELECT id FROM users WHERE account_id = $1 AND email = $2",
                    params![account, &email],
                )?
                .is_some()
            {
                return Err(StoreError::Conflict(format!(
                    "A user with email {email} already exists."
                )));
            }
            conn.execute(
                "UPDATE users SET email = $2 WHERE id = $1",
                params![id, &email],
            )?;
        }
    }
    if let Some(role) = change.role {
        if current.role == Role::Owner && role != Role::Owner && owners(conn, account)? <= 1 {
            return Err(StoreError::Conflict(
                "The account's last owner cannot change role.".into(),
            ));
        }
        conn.execute(
            "UPDATE users SET role = $2 WHERE id = $1",
            params![id, role.as_str()],
        )?;
    }
    if let Some(hash) = change.password_hash {
        conn.execute(
            "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = 0 WHERE id = $1",
            params![id, &hash],
        )?;
        revoke_sessions(conn, id, now)?;
    }
    if change.reset_mfa {
        conn.execute(
            "UPDATE users SET mfa_secret = NULL, mfa_pending = NULL WHERE id = $1",
            params![id],
        )?;
    }
    conn.execute(
        "UPDATE users SET updated = $2 WHERE id = $1",
        params![id, now],
    )?;
    get(conn, account, id)?.ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

/// Deletes a user: the row stays (the audit log names it) but can no
/// longer log in, and its keys and sessions are revoked.
pub fn delete(conn: &mut dyn Conn, account: &str, id: &str, now: i64) -> Result<(), StoreError> {
    let current =
        get(conn, account, id)?.ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
    if current.role == Role::Owner && owners(conn, account)? <= 1 {
        return Err(StoreError::Conflict(
            "The account's last owner cannot be deleted.".into(),
        ));
    }
    conn.execute(
        "UPDATE users SET disabled = $2, updated = $2 WHERE id = $1",
        params![id, now],
    )?;
    conn.execute(
        "UPDATE api_keys SET revoked = $2 WHERE user_id = $1 AND revoked IS NULL",
        params![id, now],
    )?;
    revoke_sessions(conn, id, now)
}

// ------------------------------------------------------------------ login

/// How long a login must wait after `failures` consecutive failures
/// (microseconds): nothing for the first 3, then 1, 2, 4 … 32 seconds,
/// and from the 10th a 15-minute lock.
pub fn login_wait(failures: i64) -> i64 {
    const SEC: i64 = 1_000_000;
    match failures {
        ..=2 => 0,
        3..=8 => SEC << (failures - 3),
        _ => 15 * 60 * SEC,
    }
}

/// Failures from which the login is locked (rather than slowed).
pub const LOCK_AFTER: i64 = 9;

/// What a login attempt needs to know about the user.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub user_id: String,
    pub account_id: String,
    pub password_hash: Option<String>,
    pub failed_logins: i64,
    pub locked_until: i64,
}

/// The active user with this email (the oldest, if several accounts have one).
pub fn login_record(conn: &mut dyn Conn, email: &str) -> Result<Option<LoginRecord>, StoreError> {
    let row = conn.query_opt(
        "SELECT id, account_id, password_hash, failed_logins, locked_until FROM users \
         WHERE email = $1 AND disabled IS NULL ORDER BY created, id LIMIT 1",
        params![&normalize_email(email)],
    )?;
    row.map(|r| {
        Ok(LoginRecord {
            user_id: r.text(0)?,
            account_id: r.text(1)?,
            password_hash: r.opt_text(2)?,
            failed_logins: r.int(3)?,
            locked_until: r.int(4)?,
        })
    })
    .transpose()
}

/// Counts a failed login; returns until when the next must wait.
pub fn record_login_failure(conn: &mut dyn Conn, user: &str, now: i64) -> Result<i64, StoreError> {
    let failures = conn
        .query_opt(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
            params![user],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    let until = now + login_wait(failures);
    conn.execute(
        "UPDATE users SET locked_until = $2 WHERE id = $1",
        params![user, until],
    )?;
    Ok(until)
}

/// Why a TOTP code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaRefusal {
    /// No code given, but the user has MFA.
    Required,
    /// Wrong, expired, or already used.
    Invalid,
    /// No enrolment in progress (confirm) or MFA not enabled (disable).
    NotEnrolled,
    /// Already enabled (enrol).
    AlreadyEnabled,
}

/// Checks `code` against the user's confirmed secret and, if it is good,
/// remembers its step. `Ok(Ok(()))` also when the user has no MFA.
pub fn use_totp(
    conn: &mut dyn Conn,
    user: &str,
    code: Option<&str>,
    now: i64,
) -> Result<Result<(), MfaRefusal>, StoreError> {
    let row = conn
        .query_opt(
            "SELECT mfa_secret, mfa_last_step FROM users WHERE id = $1",
            params![user],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("user {user}")))?;
    let Some(secret) = row.opt_text(0)? else {
        return Ok(Ok(()));
    };
    let Some(code) = code else {
        return Ok(Err(MfaRefusal::Required));
    };
    match check_totp(&secret, code, now, row.int(1)?) {
        Some(step) => {
            conn.execute(
                "UPDATE users SET mfa_last_step = $2 WHERE id = $1",
                params![user, step],
            )?;
            Ok(Ok(()))
        }
        None => Ok(Err(MfaRefusal::Invalid)),
    }
}

/// A successful login: resets the failure count and opens a session.
/// Returns the session id and its plain Bearer token (shown once).
pub fn open_session(
    conn: &mut dyn Conn,
    account: &str,
    user: &str,
    now: i64,
    ttl: i64,
) -> Result<(String, String), StoreError> {
    conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = $1",
        params![user],
    )?;
    let token = accounts::generate_session_token();
    let id = new_ulid();
    conn.execute(
        "INSERT INTO sessions (id, account_id, user_id, token_hash, created, expires) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        params![
            &id,
            account,
            user,
            &accounts::hash_key(&token),
            now,
            now + ttl
        ],
    )?;
    Ok((id, token))
}

pub fn revoke_session(conn: &mut dyn Conn, id: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET revoked = $2 WHERE id = $1 AND revoked IS NULL",
        params![id, now],
    )?;
    Ok(())
}

pub fn revoke_sessions(conn: &mut dyn Conn, user: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET revoked = $2 WHERE user_id = $1 AND revoked IS NULL",
        params![user, now],
    )?;
    Ok(())
}

// ------------------------------------------------------------------ MFA

/// Starts enrolment: a new pending secret, returned once. Refused while
/// MFA is enabled (disable it first).
pub fn begin_mfa(
    conn: &mut dyn Conn,
    user: &str,
) -> Result<Result<String, MfaRefusal>, StoreError> {
    let enabled = conn
        .query_opt(
            "SELECT mfa_secret IS NOT NULL FROM users WHERE id = $1",
            params![user],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("user {user}")))?
        .bool(0)?;
    if enabled {
        return Ok(Err(MfaRefusal::AlreadyEnabled));
    }
    let secret = generate_totp_secret();
    conn.execute(
        "UPDATE users SET mfa_pending = $2 WHERE id = $1",
        params![user, &secret],
    )?;
    Ok(Ok(secret))
}

/// Confirms enrolment with a code of the pending secret, which becomes
/// the user's; the code's step is remembered so it cannot log in again.
pub fn confirm_mfa(
    conn: &mut dyn Conn,
    user: &str,
    code: &str,
    now: i64,
) -> Result<Result<(), MfaRefusal>, StoreError> {
    let row = conn
        .query_opt(
            "SELECT mfa_pending, mfa_last_step FROM users WHERE id = $1",
            params![user],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("user {user}")))?;
    let Some(pending) = row.opt_text(0)? else {
        return Ok(Err(MfaRefusal::NotEnrolled));
    };
    let Some(step) = check_totp(&pending, code, now, row.int(1)?) else {
        return Ok(Err(MfaRefusal::Invalid));
    };
    conn.execute(
        "UPDATE users SET mfa_secret = mfa_pending, mfa_pending = NULL, mfa_last_step = $2, updated = $3 WHERE id = $1",
        params![user, step, now],
    )?;
    Ok(Ok(()))
}

/// Turns MFA off, with a current code.
pub fn disable_mfa(
    conn: &mut dyn Conn,
    user: &str,
    code: &str,
    now: i64,
) -> Result<Result<(), MfaRefusal>, StoreError> {
    let enabled = conn
        .query_opt(
            "SELECT mfa_secret IS NOT NULL FROM users WHERE id = $1",
            params![user],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("user {user}")))?
        .bool(0)?;
    if !enabled {
        return Ok(Err(MfaRefusal::NotEnrolled));
    }
    if let Err(r) = use_totp(conn, user, Some(code), now)? {
        return Ok(Err(r));
    }
    conn.execute(
        "UPDATE users SET mfa_secret = NULL, mfa_pending = NULL, updated = $2 WHERE id = $1",
        params![user, now],
    )?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_000_000_000_000; // 2026-11-18, microseconds

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse battery", PasswordCost::LOW).expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterY"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn totp_matches_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8 digits there;
        // the last 6 digits are the 6-digit code.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        assert_eq!(totp_code(&secret, 59_000_000).as_deref(), Some("287082"));
        assert_eq!(
            totp_code(&secret, 1_111_111_109_000_000).as_deref(),
            Some("081804")
        );
    }

    #[test]
    fn a_code_is_accepted_once_and_within_one_step() {
        let s = generate_totp_secret();
        let code = totp_code(&s, T).expect("code");
        let step = check_totp(&s, &code, T, 0).expect("fresh code");
        assert_eq!(check_totp(&s, &code, T, step), None, "replayed");
        assert!(
            check_totp(&s, &code, T + 30_000_000, 0).is_some(),
            "one step late"
        );
        assert_eq!(check_totp(&s, &code, T + 90_000_000, 0), None, "too late");
        assert_eq!(check_totp(&s, "12345", T, 0), None);
        assert_eq!(check_totp(&s, "abcdef", T, 0), None);
    }

    #[test]
    fn logins_slow_down_then_lock() {
        assert_eq!(login_wait(2), 0);
        assert_eq!(login_wait(3), 1_000_000);
        assert_eq!(login_wait(8), 32_000_000);
        assert_eq!(login_wait(LOCK_AFTER), 900_000_000);
    }
}
