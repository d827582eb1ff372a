-- Bumped by every membership change, in the same transaction: a node that keeps a big room's
-- member list in memory checks this one value per post instead of reading every member.
ALTER TABLE conversations ADD COLUMN members_version BIGINT NOT NULL DEFAULT 0;
