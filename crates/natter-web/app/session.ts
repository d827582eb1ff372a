// Registering, logging in (a device per browser, its keys made in wasm and published) and
// logging out. The device and its token live in memory only, for now: reloading the page
// logs out. (The encrypted IndexedDB store and natter-client's rules come next; see the
// crate docs.)
import { call } from './api';
import { ready } from './core';
import type { Device } from '../pkg/natter_web.js';

/** A logged-in device of this browser. */
export interface Session {
  username: string;
  userId: string;
  deviceId: string;
  token: string;
  device: Device;
}

interface SessionResponse {
  token: string;
  user_id: string;
  device_id: string;
}

/** Creates an account. */
export async function register(username: string, password: string): Promise<void> {
  await call('POST', '/v1/accounts', { username, password });
}

/** Logs in as a new device and publishes the identity and one-time keys made in wasm. */
export async function login(username: string, password: string, deviceName: string): Promise<Session> {
  const core = await ready;
  const created = await call<SessionResponse>('POST', '/v1/sessions', {
    username,
    password,
    device_name: deviceName,
  });
  const device = new core.Device();
  const upload = device.uploadRequest(created.user_id, created.device_id, 0, false, true);
  await call('POST', '/v1/devices/current/keys', upload, created.token);
  device.markPublished();
  return { username, userId: created.user_id, deviceId: created.device_id, token: created.token, device };
}

/** Logs this device out: the server forgets its token and keys, the page its device. */
export async function logout(session: Session): Promise<void> {
  await call('DELETE', '/v1/sessions/current', undefined, session.token);
  session.device.free();
}
