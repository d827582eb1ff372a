// The store's passphrase, kept wrapped: a random passphrase locks the device's store (natter-client
// seals every value under it), and a non-extractable AES-GCM key wraps that passphrase. Both live
// in a small IndexedDB database of their own, deleted at logout. Non-extractable means script can
// use the key but never read its bytes; it does not keep the key off the disk: browsers store a
// CryptoKey in IndexedDB with its key material (Chromium serializes it into the profile's files),
// so a copy of a logged-in profile can open the store. Logging out is what leaves nothing.

const DB = 'natter-keys';
const TABLE = 'keys';
const RECORD = 'store';

/** What this browser keeps to open its device again. */
interface KeyRecord {
  /** The device's store (its name in SQLite's IndexedDB VFS). */
  store: string;
  /** The wrapping key: non-extractable, so its bytes never reach JavaScript. */
  key: CryptoKey;
  iv: Uint8Array<ArrayBuffer>;
  wrapped: ArrayBuffer;
}

/** A store and the passphrase that opens it. */
export interface StoreKey {
  store: string;
  passphrase: string;
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function database(): Promise<IDBDatabase> {
  const open = indexedDB.open(DB, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(TABLE);
  return request(open);
}

async function withTable<T>(mode: IDBTransactionMode, work: (table: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await database();
  try {
    const tx = db.transaction(TABLE, mode);
    const result = await request(work(tx.objectStore(TABLE)));
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
    return result;
  } finally {
    db.close();
  }
}

/** Makes a random passphrase for a new store and keeps it wrapped; returns it. */
export async function createStoreKey(): Promise<StoreKey> {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const passphrase = btoa(String.fromCharCode(...bytes));
  const store = `device-${crypto.randomUUID()}`;
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const wrapped = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, new TextEncoder().encode(passphrase));
  const record: KeyRecord = { store, key, iv, wrapped };
  await withTable('readwrite', (table) => table.put(record, RECORD));
  return { store, passphrase };
}

/** The store this browser logged in with and its passphrase, if any. */
export async function loadStoreKey(): Promise<StoreKey | null> {
  const record = (await withTable('readonly', (table) => table.get(RECORD))) as KeyRecord | undefined;
  if (!record) return null;
  const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: record.iv }, record.key, record.wrapped);
  return { store: record.store, passphrase: new TextDecoder().decode(plain) };
}

/** Forgets the wrapping key and the wrapped passphrase. */
export async function forgetStoreKey(): Promise<void> {
  await withTable('readwrite', (table) => table.delete(RECORD));
}
