-- Accounts, devices, keys and connections. Portable SQL: the same file runs on SQLite and
-- PostgreSQL. Ids are UUID text; times are milliseconds since the Unix epoch.

CREATE TABLE users (
    id             TEXT   NOT NULL PRIMARY KEY,
    username       TEXT   NOT NULL,
    username_lower TEXT   NOT NULL UNIQUE,
    password_hash  TEXT   NOT NULL,
    display_name   TEXT   NOT NULL,
    avatar_url     TEXT,
    created_at     BIGINT NOT NULL
);

-- One row per login. The bearer token is stored only as its SHA-256.
CREATE TABLE devices (
    id                  TEXT   NOT NULL PRIMARY KEY,
    user_id             TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                TEXT   NOT NULL,
    token_hash          TEXT   NOT NULL UNIQUE,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    curve25519          TEXT,
    ed25519             TEXT,
    key_signature       TEXT,
    keys_created_at     BIGINT,
    fallback_key_id     TEXT,
    fallback_key        TEXT,
    fallback_created_at BIGINT
);
CREATE INDEX devices_by_user ON devices (user_id, created_at);

CREATE TABLE one_time_keys (
    device_id  TEXT   NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key_id     TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, key_id)
);

-- One row per (user, peer): the user's side of the relationship. Rows are never deleted,
-- only set to 'none', so a side's version keeps growing and If-Match stays meaningful.
CREATE TABLE connections (
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);
