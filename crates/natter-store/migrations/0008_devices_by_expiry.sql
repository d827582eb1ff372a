-- Devices by when their tokens expire: the hourly removal of devices unused for the token
-- lifetime finds them without reading every device.
CREATE INDEX devices_by_expiry ON devices (expires_at);
