-- The resend index keyed by client_msg_id first: clients make time-ordered ids (UUIDv7, as
-- natter-client does), so every new entry lands at the right edge of one index instead of on a
-- random page of each sending device's range, which saves one page write per message. Lookups
-- name both columns, so any id still works; only random ids lose the saving.
-- On PostgreSQL, reads and writes of messages wait while the index is rebuilt (docs/operations.md).
DROP INDEX messages_by_client_id;
CREATE UNIQUE INDEX messages_by_client_id ON messages (client_msg_id, sender_device);
