// The app as natterd serves it, in headless Chromium: the wasm core runs in the page under
// the strict CSP, does real Olm and Megolm between two in-page devices, and computes the same
// safety number as natter-crypto built natively.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openApp, screenshots, setUp } from './browser.mjs';
import { target } from './natterd.mjs';

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
    assert.match(await page.getByRole('status').textContent(), /encryption is ready/);
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

test('two in-page devices talk over Olm and Megolm, and the safety number matches native natter-crypto', async () => {
  const { context, page } = await openApp(running);
  const result = await page.evaluate(async () => {
    const script = document.querySelector('script[type=module]').src;
    const core = await (await import(script)).ready;
    const someone = () => ({ user: crypto.randomUUID(), device: crypto.randomUUID(), keys: new core.Device() });
    const [alice, bob] = [someone(), someone()];
    const upload = JSON.parse(bob.keys.uploadRequest(bob.user, bob.device, 0, false, true));
    bob.keys.markPublished();
    alice.keys.openSession(bob.keys.curve25519(), upload.one_time_keys[0].key);
    const hello = alice.keys.encryptTo(bob.keys.curve25519(), 'hello bob');
    const received = bob.keys.receive(hello);

    const conversation = crypto.randomUUID();
    const outbound = new core.OutboundGroup(conversation, Date.now());
    const share = outbound.shareWith(alice.keys, alice.user, alice.device, bob.user, bob.device, bob.keys.curve25519());
    const ciphertext = outbound.encrypt('good morning', conversation, alice.device);
    const keyShare = bob.keys.receive(share);
    const inbound = keyShare.roomKey(alice.user, alice.device, bob.device);
    const message = {
      conversation_id: conversation,
      seq: 1,
      sender_id: alice.user,
      sender_device_id: alice.device,
      client_msg_id: 'c1',
      server_ts: Date.now(),
      ciphertext,
    };
    const decrypted = inbound.decrypt(JSON.stringify(message));
    let moved;
    try {
      inbound.decrypt(JSON.stringify({ ...message, conversation_id: crypto.randomUUID() }));
    } catch (error) {
      moved = error.message;
    }

    const [aliceId, bobId] = [
      core.CrossSigning.generate(alice.user),
      core.CrossSigning.generate(bob.user),
    ];
    return {
      helloHidden: !hello.includes('hello bob'),
      helloText: received.text(),
      newSession: received.newSession,
      roomKeyText: keyShare.text(),
      ciphertextHidden: !ciphertext.includes('good morning'),
      decrypted,
      moved,
      users: [alice.user, aliceId.masterKey, bob.user, bobId.masterKey],
      number: core.safetyNumber(alice.user, aliceId.masterKey, bob.user, bobId.masterKey),
      reversed: core.safetyNumber(bob.user, bobId.masterKey, alice.user, aliceId.masterKey),
    };
  });
  assert.ok(result.helloHidden && result.ciphertextHidden, 'ciphertexts do not hold the text');
  assert.equal(result.helloText, 'hello bob');
  assert.equal(result.newSession, true);
  assert.equal(result.roomKeyText, undefined, 'a room key never reaches JavaScript');
  assert.equal(result.decrypted, 'good morning');
  assert.equal(result.moved, 'mismatch');
  assert.match(result.number, /^(\d{5} ){11}\d{5}$/);
  assert.equal(result.reversed, result.number);

  const native = join(target, 'debug/examples/safety_number');
  assert.ok(existsSync(native), `${native} is missing: cargo build -p natter-web --example safety_number`);
  assert.equal(execFileSync(native, result.users, { encoding: 'utf8' }).trim(), result.number);
  assert.deepEqual(page.problems, []);
  await context.close();
});
