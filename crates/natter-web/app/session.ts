// This browser's device: opened again at start from the store IndexedDB keeps, or made by
// logging in; logging out leaves nothing of it behind.
import type { Natter } from '../pkg/natter_web.js';
import { ready } from './core';
import { createStoreKey, forgetStoreKey, loadStoreKey } from './keystore';
import { code } from './views';

/** A device of this browser, open. */
export interface Session {
  natter: Natter;
  /** Its store's name, removed at logout. */
  store: string;
  username: string;
  /** The recovery key to show once (the first device of an account). */
  recoveryKey: string | null;
}

async function opened(natter: Natter, store: string): Promise<Session> {
  return { natter, store, username: await natter.username(), recoveryKey: await natter.takeRecoveryKey() };
}

/** What `resume` found: the device, or none (and why a kept one did not open). */
export interface Resumed {
  session: Session | null;
  /** The error code of a kept store that did not open (`wrong_passphrase`...), removed since. */
  lost?: string;
}

/** Loads the stores and opens the device this browser logged in with, if any. */
export async function resume(): Promise<Resumed> {
  const { Natter } = await ready;
  await Natter.openStorage();
  const kept = await loadStoreKey().catch(() => null);
  if (!kept) return { session: null };
  try {
    return { session: await opened(await Natter.open(kept.store, kept.passphrase), kept.store) };
  } catch (error) {
    if (code(error) !== 'not_logged_in' && code(error) !== 'wrong_passphrase') throw error;
    // The store is gone or no longer opens: start again.
    await Natter.removeStore(kept.store);
    await forgetStoreKey();
    return { session: null, lost: code(error) };
  }
}

/** Creates an account on this page's server. */
export async function register(username: string, password: string): Promise<void> {
  const { Natter } = await ready;
  await Natter.register(location.origin, username, password, undefined);
}

/** Logs in as a new device of this browser, with a new store under a random passphrase. */
export async function login(username: string, password: string, deviceName: string): Promise<Session> {
  const { Natter } = await ready;
  const { store, passphrase } = await createStoreKey();
  try {
    return await opened(await Natter.login(location.origin, username, password, deviceName, store, passphrase), store);
  } catch (error) {
    await Natter.removeStore(store);
    await forgetStoreKey();
    throw error;
  }
}

/** Logs out: the server forgets the device (if it can be reached), the browser its store and key. */
export async function logout(session: Session): Promise<void> {
  const { Natter } = await ready;
  try {
    await session.natter.logout();
  } catch {
    // Unreachable, or the server already forgot the device: the browser's copy goes anyway.
  }
  session.natter.free();
  await Natter.removeStore(session.store);
  await forgetStoreKey();
}
