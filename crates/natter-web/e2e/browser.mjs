// Debian's chromium, headless, driven by playwright-core (never `playwright install`), against
// the real natterd: each test file gets one natterd and one browser; each launch gets a fresh
// temporary profile (user data dir), removed when it closes.
import { mkdirSync } from 'node:fs';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { startNatterd } from './natterd.mjs';

/** Where the tests leave screenshots for a reviewer (git-ignored). */
export const screenshots = new URL('../screenshots/', import.meta.url).pathname;

async function launch() {
  mkdirSync(screenshots, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Starts natterd and the browser before this file's tests and stops them after. */
export function setUp() {
  const running = {};
  before(async () => {
    running.natterd = await startNatterd();
    running.browser = await launch();
  });
  after(async () => {
    await running.browser?.close();
    await running.natterd?.stop();
  });
  return running;
}

/**
 * Opens the app in a new browser context (a person's own browser) and waits for its wasm
 * core. `page.problems` collects console errors and uncaught exceptions.
 */
export async function openApp({ browser, natterd }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
  page.on('pageerror', (error) => problems.push(String(error)));
  page.problems = problems;
  // The tokens the page sends in the WebSocket's auth frame, to look for them where they must
  // not be.
  page.tokens = new Set();
  page.on('websocket', (socket) =>
    socket.on('framesent', ({ payload }) => {
      const frame = typeof payload === 'string' && payload.startsWith('{') ? JSON.parse(payload) : null;
      if (frame?.type === 'auth') page.tokens.add(frame.token);
    }),
  );
  await page.goto(natterd.url);
  await page.waitForSelector('[data-core=ready]');
  return { context, page };
}

/** Creates an account from the app's form. */
export async function register(page, username, password) {
  await page.getByRole('button', { name: 'New here? Create an account' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
}

/** Logs in from the app's form. */
export async function login(page, username, password) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/**
 * A person with the app open in their own browser context: registered, logged in as the
 * account's first device, the recovery key shown (and returned as `page.recoveryKey`).
 */
export async function person(running, username) {
  const { page } = await openApp(running);
  await register(page, username, `${username}-password`);
  await page.getByText(`Account ${username} created`).waitFor();
  await login(page, username, `${username}-password`);
  const key = page.locator('[data-recovery-key]');
  await key.waitFor();
  page.recoveryKey = (await key.textContent()).trim();
  await page.getByRole('button', { name: 'I wrote it down' }).click();
  await page.getByRole('heading', { name: 'Conversations' }).waitFor();
  return page;
}

/** Goes to one of the app's sections (Chats, People, Devices), shown afresh. */
export async function section(page, name) {
  const others = ['Chats', 'People', 'Devices'].filter((other) => other !== name);
  await page.getByRole('button', { name: others[0], exact: true }).click();
  await page.getByRole('button', { name, exact: true }).click();
}

/**
 * Every value of every IndexedDB database of the page's origin, as text (bytes as Latin-1),
 * to look for plaintext in.
 */
export async function indexedDbContents(page) {
  return page.evaluate(async () => {
    const done = (request) =>
      new Promise((resolve, reject) => {
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
    const text = (value) => {
      if (value instanceof ArrayBuffer) value = new Uint8Array(value);
      if (ArrayBuffer.isView(value)) {
        const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
        let out = '';
        for (const byte of bytes) out += String.fromCharCode(byte);
        return out;
      }
      if (value instanceof CryptoKey) return `[CryptoKey extractable=${value.extractable}]`;
      if (value && typeof value === 'object') return Object.entries(value).map(([k, v]) => `${k}=${text(v)}`).join(';');
      return String(value);
    };
    const found = [];
    for (const { name } of await indexedDB.databases()) {
      const db = await done(indexedDB.open(name));
      for (const store of db.objectStoreNames) {
        const table = db.transaction(store).objectStore(store);
        const [keys, values] = [await done(table.getAllKeys()), await done(table.getAll())];
        found.push({ db: name, store, records: values.length, text: text(keys) + text(values) });
      }
      db.close();
    }
    return found;
  });
}

/** `page` (as `name`) asks `username` to connect, and `other` accepts from People. */
export async function connect(page, other, username, name) {
  await section(page, 'People');
  await page.getByLabel('Find someone by username').fill(username);
  await page.getByRole('button', { name: 'Find', exact: true }).click();
  await page.getByRole('button', { name: `Ask ${username} to connect` }).click();
  await page.getByText(`Asked ${username} to connect`).waitFor();
  await section(other, 'People');
  await other.getByRole('button', { name: `Accept ${name}` }).click();
  await other.getByRole('button', { name: `Message ${name}` }).waitFor();
}

/** Creates a room from People with the connections named as members, and opens it. */
export async function createRoom(page, title, members) {
  await section(page, 'People');
  await page.getByLabel('Room name').fill(title);
  for (const member of members) await page.getByRole('checkbox', { name: member }).check();
  await page.getByRole('button', { name: 'Create room' }).click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
}

/** Opens a conversation from the list. */
export async function open(page, title) {
  await section(page, 'Chats');
  await page.locator(`[data-conversation="${title}"]`).click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
}

/** Types and sends a message in the open conversation. */
export async function send(page, to, text) {
  const composer = page.getByLabel(`Message to ${to}`);
  await composer.fill(text);
  await composer.press('Enter');
}

/** The message with this text in the open conversation. */
export const message = (page, text) => page.locator('.messages li', { hasText: text });
