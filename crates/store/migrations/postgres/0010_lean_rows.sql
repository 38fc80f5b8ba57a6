-- Identifier indexes hold only profiles that have that identifier (kept in
-- step with ../sqlite/0010_lean_rows.sql; PostgreSQL has no rowid tables,
-- so the WITHOUT ROWID half has no counterpart here).
DROP INDEX profiles_email;
DROP INDEX profiles_phone;
DROP INDEX profiles_external;
DROP INDEX profiles_anonymous;
CREATE UNIQUE INDEX profiles_email ON profiles (account_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX profiles_phone ON profiles (account_id, phone_number) WHERE phone_number IS NOT NULL;
CREATE UNIQUE INDEX profiles_external ON profiles (account_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX profiles_anonymous ON profiles (account_id, anonymous_id) WHERE anonymous_id IS NOT NULL;
