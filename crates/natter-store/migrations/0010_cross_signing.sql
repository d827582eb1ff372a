-- Cross-signing and the key backup. The server stores what clients sign and seal; it never
-- holds a private key and cannot read a backup item.

-- Each user's identity: the public master key, the self-signing key it signs, and that signature.
CREATE TABLE identities (
    user_id          TEXT   NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    master_key       TEXT   NOT NULL,
    self_signing_key TEXT   NOT NULL,
    signature        TEXT   NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- A device's signature by its user's self-signing key (cleared when its identity keys change).
ALTER TABLE devices ADD COLUMN cross_signature TEXT;

-- A user's key backup: opaque items sealed by the user's clients (recovery data, room keys).
CREATE TABLE backup_items (
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, name)
);
