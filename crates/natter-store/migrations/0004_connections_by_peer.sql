-- "Who blocks this sender?" is asked on every send: look it up by peer instead of scanning
-- every connection row (found by natter-bench's profile with 10,000 users).
CREATE INDEX connections_by_peer ON connections (peer_id, state);
