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
  await page.goto(natterd.url);
  await page.waitForSelector('[data-core=ready]');
  return { context, page };
}
