-- Conversations, members, the message log, per-device cursors and the to-device inbox.
-- Portable SQL for SQLite and PostgreSQL. The log is keyed by (conversation, seq), so it
-- partitions by conversation.

CREATE TABLE conversations (
    id         TEXT   NOT NULL PRIMARY KEY,
    kind       TEXT   NOT NULL,
    name       TEXT,
    -- For direct conversations: the two user ids, sorted and joined, so a pair has one.
    direct_key TEXT   UNIQUE,
    created_at BIGINT NOT NULL,
    -- The last seq handed out; appends bump it under the row's lock.
    last_seq   BIGINT NOT NULL,
    last_ts    BIGINT NOT NULL
);

-- A member sees messages with joined_seq < seq (<= left_seq once they left).
CREATE TABLE members (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT   NOT NULL,
    joined_seq      BIGINT NOT NULL,
    joined_at       BIGINT NOT NULL,
    left_seq        BIGINT,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id, conversation_id);

CREATE TABLE messages (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    sender_id       TEXT   NOT NULL,
    sender_device   TEXT   NOT NULL,
    client_msg_id   TEXT   NOT NULL,
    client_ts       BIGINT,
    server_ts       BIGINT NOT NULL,
    ciphertext      TEXT   NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
-- Resends of one (device, client_msg_id) are stored once.
CREATE UNIQUE INDEX messages_by_client_id ON messages (sender_device, client_msg_id);
CREATE INDEX messages_by_sender ON messages (sender_id, server_ts);

-- How far each device got in each conversation. No row means nothing yet.
CREATE TABLE cursors (
    device_id       TEXT   NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT   NOT NULL,
    delivered_seq   BIGINT NOT NULL,
    read_seq        BIGINT NOT NULL,
    PRIMARY KEY (device_id, conversation_id)
);
CREATE INDEX cursors_by_conversation ON cursors (conversation_id, delivered_seq);

-- Opaque payloads for one device (key shares), deleted once the device acknowledges them.
ALTER TABLE devices ADD COLUMN inbox_seq BIGINT NOT NULL DEFAULT 0;
CREATE TABLE inbox (
    device_id     TEXT   NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    sender_id     TEXT   NOT NULL,
    sender_device TEXT   NOT NULL,
    payload       TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
