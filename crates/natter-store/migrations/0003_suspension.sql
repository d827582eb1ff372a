-- Operators can suspend an account: its tokens stop working until the suspension is lifted.
ALTER TABLE users ADD COLUMN suspended_at BIGINT;
