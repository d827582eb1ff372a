-- Inbox items by sending device: each sender's share of a device's inbox is counted without
-- reading the rest of it.
CREATE INDEX inbox_by_sender ON inbox (device_id, sender_device);
