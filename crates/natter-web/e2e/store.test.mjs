// The browser's store and the bindings' refusals: a store whose kept key no longer opens it, a
// message sent the moment before the tab dies, and a page that hands the core ids it should not.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, indexedDbContents, message, open, person, screenshots, send, setUp } from './browser.mjs';

const running = setUp();
const shot = (page, name) => page.screenshot({ path: join(screenshots, `${name}.png`) });
let eve;
let fay;

test('a store its kept key no longer opens is reported, removed, and the app asks to log in', async () => {
  const dee = await person(running, 'dee');
  // The wrapped passphrase is replaced by another one, wrapped by the same key.
  await dee.evaluate(async () => {
    const done = (request) =>
      new Promise((resolve, reject) => {
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
    const db = await done(indexedDB.open('natter-keys'));
    const record = await done(db.transaction('keys').objectStore('keys').get('store'));
    record.wrapped = await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv: record.iv },
      record.key,
      new TextEncoder().encode('not the passphrase of this store'),
    );
    await done(db.transaction('keys', 'readwrite').objectStore('keys').put(record, 'store'));
    db.close();
  });
  await dee.reload();
  const lost = dee.locator('[data-lost]');
  await lost.waitFor();
  assert.equal(await lost.getAttribute('data-lost'), 'wrong_passphrase');
  assert.match(await lost.textContent(), /could not be opened \(its key no longer opens its store\)/);
  await dee.getByRole('heading', { name: 'Log in' }).waitFor();
  await shot(dee, 'store-lost');
  // removeStore resolved only once IndexedDB forgot the pages: nothing is left by now.
  const left = (await indexedDbContents(dee)).filter((store) => store.records > 0);
  assert.deepEqual(left.map((store) => `${store.db}/${store.store}: ${store.records} records`), []);
  assert.deepEqual(dee.problems, []);
  await dee.context().close();
});

test('a message sent the moment before the tab crashes goes out exactly once from the next one', async () => {
  [eve, fay] = [await person(running, 'eve'), await person(running, 'fay')];
  await connect(eve, fay, 'fay', 'eve');
  await eve.getByRole('button', { name: 'Message fay' }).click();
  await eve.getByRole('heading', { name: 'fay', exact: true }).waitFor();
  await running.natterd.down();
  await eve.locator('[data-connection="offline"]').waitFor();
  await send(eve, 'fay', 'sent as the tab crashed');
  // The app shows it queued once sendText resolved: from then on it is in IndexedDB.
  await message(eve, 'sent as the tab crashed').locator('[data-tick="pending"]').waitFor();
  const context = eve.context();
  const cdp = await context.newCDPSession(eve);
  const crashed = eve.waitForEvent('crash');
  cdp.send('Page.crash').catch(() => {}); // never answered: the renderer is gone
  await crashed;
  await running.natterd.up();

  eve = await context.newPage();
  eve.problems = [];
  eve.on('pageerror', (error) => eve.problems.push(String(error)));
  await eve.goto(running.natterd.url);
  await eve.getByRole('heading', { name: 'Conversations' }).waitFor();
  await open(fay, 'eve');
  await message(fay, 'sent as the tab crashed').waitFor({ timeout: 30_000 });
  await open(eve, 'fay');
  await message(eve, 'sent as the tab crashed').locator('[data-tick="read"]').waitFor({ timeout: 30_000 });
  assert.equal(await message(fay, 'sent as the tab crashed').count(), 1);
  assert.equal(await message(eve, 'sent as the tab crashed').count(), 1);
  assert.deepEqual(eve.problems, []);
});

/**
 * A page of natterd's origin that loads the core (wasm-bindgen's output in pkg/, as
 * scripts/build left it) on its own, without the app: what an injected script could call.
 */
async function bindingsPage() {
  const pkg = new URL('../pkg/', import.meta.url).pathname;
  assert.ok(existsSync(join(pkg, 'natter_web.js')), `${pkg} is missing: run scripts/build`);
  const context = await running.browser.newContext();
  await context.route(`${running.natterd.url}/bindings/**`, (route) => {
    const file = new URL(route.request().url()).pathname.replace('/bindings/', '');
    if (!file) return route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>bindings</title>' });
    const type = file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript';
    return route.fulfill({ contentType: type, body: readFileSync(join(pkg, file)) });
  });
  const page = await context.newPage();
  await page.goto(`${running.natterd.url}/bindings/`);
  return page;
}

test("another user's conversation id is refused with not_member, and a seq must be a safe integer", async () => {
  const direct = running.natterd.query("SELECT id FROM conversations WHERE kind = 'direct';");
  assert.match(direct, /^[0-9a-f-]{36}$/, "eve and fay's conversation");
  const page = await bindingsPage();
  const outcome = await page.evaluate(async (conversation) => {
    const core = await import('/bindings/natter_web.js');
    await core.default({ module_or_path: '/bindings/natter_web_bg.wasm' });
    const { Natter } = core;
    await Natter.openStorage();
    await Natter.register(location.origin, 'gil', 'gil-password', undefined);
    const natter = await Natter.login(location.origin, 'gil', 'gil-password', 'Page', 'gil-store', 'gil passphrase');
    const refusal = async (call) => {
      try {
        await call();
        return 'accepted';
      } catch (error) {
        return `${error.name}: ${error.message}`;
      }
    };
    return {
      messages: await refusal(() => natter.messages(conversation, 10)),
      pending: await refusal(() => natter.pending(conversation)),
      sendText: await refusal(() => natter.sendText(conversation, 'not my conversation')),
      markRead: await refusal(() => natter.markRead(conversation, 1)),
      marks: await refusal(() => natter.marks(conversation, [])),
      readUpTo: await refusal(() => natter.readUpTo(conversation)),
      addMembers: await refusal(() => natter.addMembers(conversation, [natter.userId])),
      removeMember: await refusal(() => natter.removeMember(conversation, natter.userId)),
      halfSeq: await refusal(() => natter.markRead(conversation, 1.5)),
      hugeSeq: await refusal(() => natter.markRead(conversation, 2 ** 53)),
      notAnId: await refusal(() => natter.messages('general', 10)),
    };
  }, direct);
  const refused = `not_member: not a member of conversation ${direct}`;
  for (const call of ['messages', 'pending', 'sendText', 'markRead', 'marks', 'readUpTo', 'addMembers', 'removeMember']) {
    assert.equal(outcome[call], refused, call);
  }
  assert.match(outcome.halfSeq, /^Error: not a valid seq: 1\.5 is not a whole number/);
  assert.match(outcome.hugeSeq, /^Error: not a valid seq: 9007199254740992 is not a whole number/);
  assert.equal(outcome.notAnId, 'Error: not a valid conversation id: expected a UUID');
  assert.equal(await message(fay, 'not my conversation').count(), 0, 'nothing reached fay');
  await page.context().close();
});
