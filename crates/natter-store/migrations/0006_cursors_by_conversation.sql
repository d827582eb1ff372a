-- Cursors by conversation, without the delivered seq: a cursor move changes no indexed column,
-- so it rewrites only the cursor's row (on PostgreSQL, a HOT update) instead of the row and an
-- index entry. The lookups by conversation (receipts, unread counts) never used the seq as a range.
-- On PostgreSQL, writes to cursors wait while the index is rebuilt (docs/operations.md).
DROP INDEX cursors_by_conversation;
CREATE INDEX cursors_by_conversation ON cursors (conversation_id, user_id);
