// Debian's chromium, headless, driven by playwright-core (never `playwright install`): each
// launch gets a fresh temporary profile (user data dir), removed when it closes.
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

/** Where the tests leave screenshots for a reviewer (git-ignored). */
export const screenshots = new URL('../screenshots/', import.meta.url).pathname;

/** Launches the browser. */
export async function launch() {
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

/** A new page that fails the test on any console error or uncaught exception. */
export async function page(context) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
  page.on('pageerror', (error) => problems.push(String(error)));
  page.problems = problems;
  return page;
}
