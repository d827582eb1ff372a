// The app as natterd serves it, in headless Chromium: the wasm core loads fast and runs in the
// page under the strict CSP.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openApp, screenshots, setUp } from './browser.mjs';

const running = setUp();

test('the app loads its wasm core in under a second', async () => {
  // Two visits from new browser profiles, with nothing cached: right after natterd started,
  // and again.
  for (const visit of ['first visit', 'second visit']) {
    const { context, page } = await openApp(running);
    const timing = await page.evaluate(() => ({
      ready: performance.getEntriesByName('natter:ready')[0].startTime,
      transferred: performance
        .getEntriesByType('resource')
        .concat(performance.getEntriesByType('navigation'))
        .map((entry) => [entry.name.replace(location.origin, ''), entry.transferSize]),
    }));
    console.log(`${visit}: ready ${timing.ready.toFixed(0)} ms after navigation`, timing.transferred);
    assert.ok(timing.ready < 1000, `${visit}: ready after ${timing.ready} ms`);
    assert.match(await page.locator('[data-core]').textContent(), /encryption is ready/);
    await page.screenshot({ path: join(screenshots, 'core-ready.png') });
    assert.deepEqual(page.problems, []);
    await context.close();
  }
});

test('the content security policy blocks inline scripts and other origins while wasm runs', async () => {
  const { context, page } = await openApp(running);
  const outcome = await page.evaluate(async () => {
    const violations = [];
    document.addEventListener('securitypolicyviolation', (event) => violations.push(event.effectiveDirective));
    const inline = document.createElement('script');
    inline.textContent = 'window.inlineRan = true';
    document.body.append(inline);
    let elsewhere = 'reached';
    try {
      await fetch('http://127.0.0.1:9/');
    } catch {
      elsewhere = 'blocked';
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    return { inlineRan: window.inlineRan ?? false, elsewhere, violations: violations.sort() };
  });
  assert.deepEqual(outcome, {
    inlineRan: false,
    elsewhere: 'blocked',
    violations: ['connect-src', 'script-src-elem'],
  });
  await context.close();
});
