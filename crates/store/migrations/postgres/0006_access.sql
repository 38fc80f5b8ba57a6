-- Access control (issue 6): MFA and login throttling on users, sessions,
-- and the audit log. Kept in step with ../sqlite/0006_access.sql.

-- mfa_secret: the confirmed TOTP secret (base32); mfa_pending: one being
-- enrolled, not yet confirmed. mfa_last_step: the last TOTP time step
-- accepted, so no code is accepted twice. failed_logins/locked_until:
-- consecutive failures and the lock they caused. disabled: a deleted user
-- (rows stay for the audit log and their keys' history).
ALTER TABLE users ADD COLUMN mfa_secret TEXT;
ALTER TABLE users ADD COLUMN mfa_pending TEXT;
ALTER TABLE users ADD COLUMN mfa_last_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled BIGINT;
ALTER TABLE users ADD COLUMN updated BIGINT NOT NULL DEFAULT 0;

-- A login's Bearer token, stored only as its SHA-256 hash.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    token_hash  TEXT NOT NULL UNIQUE,
    created     BIGINT NOT NULL,
    expires     BIGINT NOT NULL,
    revoked     BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Who changed what, when. actor_key / actor_session: the credential used.
CREATE TABLE audit_log (
    seq            BIGSERIAL PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    at             BIGINT NOT NULL,
    actor_user     TEXT,
    actor_key      TEXT,
    actor_session  TEXT,
    action         TEXT NOT NULL,
    target_type    TEXT NOT NULL,
    target_id      TEXT NOT NULL,
    detail         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_account ON audit_log (account_id, seq);
