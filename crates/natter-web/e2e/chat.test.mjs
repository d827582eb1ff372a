// Two people in two browser contexts, and a third in the terminal client: they register,
// connect, verify each other, chat both ways with ticks and typing, get through a natterd
// restart with messages queued while it was down, stay logged in across reloads, share a room
// with the terminal client, and log out leaving nothing readable in the browser; natterd's
// database and log never hold a message's text.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import {
  connect,
  createRoom,
  indexedDbContents,
  message,
  open,
  person,
  screenshots,
  section,
  send as sendText,
  setUp,
} from './browser.mjs';
import { target } from './natterd.mjs';

const running = setUp();
const shot = (page, name) => page.screenshot({ path: join(screenshots, `${name}.png`) });
/** Every text sent in the test, looked for where it must not be. */
const texts = [];
let alice;
let bob;

/** Sends a message in the open conversation, remembering its text. */
async function send(page, to, text) {
  texts.push(text);
  await sendText(page, to, text);
}

test('two people register, connect and verify each other', async () => {
  [alice, bob] = [await person(running, 'alice'), await person(running, 'bob')];
  assert.match(alice.recoveryKey, /\w/);
  await connect(alice, bob, 'bob', 'alice');
  await shot(bob, 'people');

  await section(alice, 'Devices');
  await section(bob, 'Devices');
  const number = (page, name) =>
    page.locator(`[data-verify="${name}"] [data-safety-number]`).getAttribute('data-safety-number');
  const [seenByAlice, seenByBob] = [await number(alice, 'bob'), await number(bob, 'alice')];
  assert.match(seenByAlice, /^(\d{5} ){11}\d{5}$/);
  assert.equal(seenByAlice, seenByBob, 'both browsers show the same safety number');
  running.safetyNumber = seenByAlice;
  assert.notEqual(await alice.locator('[data-verify="bob"] [data-trust]').textContent(), 'verified');
  await alice.getByRole('button', { name: 'Mark bob verified' }).click();
  await alice.locator('[data-verify="bob"] [data-trust="verified"]').waitFor();
  await shot(alice, 'devices');
});

test('they chat both ways and see ticks and typing', async () => {
  await section(alice, 'People');
  await alice.getByRole('button', { name: 'Message bob' }).click();
  await alice.getByRole('heading', { name: 'bob', exact: true }).waitFor();
  await send(alice, 'bob', 'hello bob, from the browser');
  await message(alice, 'hello bob').locator('[data-tick="sent"], [data-tick="delivered"]').waitFor();

  await section(bob, 'Chats');
  await bob.locator('[data-conversation="alice"] [data-unread]').waitFor();
  await open(bob, 'alice');
  await message(bob, 'hello bob, from the browser').waitFor();
  await message(alice, 'hello bob').locator('[data-tick="read"]').waitFor();

  await bob.getByLabel('Message to alice').pressSequentially('hi al', { delay: 20 });
  await alice.getByText('bob is typing…').waitFor();
  await shot(alice, 'typing');
  await bob.getByLabel('Message to alice').fill('');
  await send(bob, 'alice', 'hi alice, bob here');
  await message(alice, 'hi alice, bob here').waitFor();
  await alice.getByText('bob is typing…').waitFor({ state: 'hidden' });
  await message(bob, 'hi alice').locator('[data-tick="read"]').waitFor();
  await shot(alice, 'chat');

  await alice.getByRole('searchbox', { name: 'Search messages' }).fill('bob here');
  await alice.getByRole('button', { name: 'Search', exact: true }).click();
  await alice.getByRole('heading', { name: '1 message found' }).waitFor();
  await alice.getByRole('button', { name: 'Close the results' }).click();
});

test('messages sent while natterd is down go out exactly once when it is back', async () => {
  await running.natterd.down();
  await alice.locator('[data-connection="offline"]').waitFor();
  await bob.locator('[data-connection="offline"]').waitFor();
  await send(alice, 'bob', 'queued while natterd was down');
  await message(alice, 'queued while natterd').locator('[data-tick="pending"]').waitFor();
  await shot(alice, 'offline');

  await running.natterd.up();
  await alice.locator('[data-connection="online"]').waitFor({ timeout: 30_000 });
  await message(bob, 'queued while natterd was down').waitFor({ timeout: 30_000 });
  await message(alice, 'queued while natterd').locator('[data-tick="read"]').waitFor({ timeout: 30_000 });
  await send(bob, 'alice', 'got it after the restart');
  await message(alice, 'got it after the restart').waitFor();
  assert.equal(await message(bob, 'queued while natterd was down').count(), 1);
  assert.equal(await message(alice, 'queued while natterd was down').count(), 1);
});

test('reloading keeps them logged in, with their messages', async () => {
  for (const page of [alice, bob]) {
    await page.reload();
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
  }
  await open(alice, 'bob');
  await message(alice, 'got it after the restart').waitFor();
  await open(bob, 'alice');
  await message(bob, 'got it after the restart').waitFor();
  assert.equal(await message(bob, 'queued while natterd was down').count(), 1);
});

test('a second tab is told that Natter is open in another one', async () => {
  const tab = await alice.context().newPage();
  await tab.goto(running.natterd.url);
  await tab.getByText('Natter is open in another tab').waitFor();
  await tab.close();
});

/** The terminal client as carol, with her own data directory. */
function terminal() {
  const binary = join(target, 'debug/natter');
  assert.ok(existsSync(binary), `${binary} is missing: cargo build -p natter-cli --bin natter`);
  const home = mkdtempSync(join(tmpdir(), 'natter-cli-'));
  const run = promisify(execFile);
  const natter = async (...args) => {
    const { stdout } = await run(binary, args, {
      env: {
        ...process.env,
        NATTER_SERVER: running.natterd.url,
        NATTER_HOME: home,
        NATTER_PASSWORD: 'carol-password',
        NATTER_PASSPHRASE: 'carol passphrase',
      },
    });
    return stdout;
  };
  natter.remove = () => rmSync(home, { recursive: true, force: true });
  return natter;
}

test('the terminal client joins a room with them; each decrypts the others', async () => {
  const carol = terminal();
  try {
    await carol('register', 'carol');
    await carol('login', 'carol');
    await carol('connections', 'request', 'alice');
    await carol('connections', 'request', 'bob');
    for (const page of [alice, bob]) {
      await section(page, 'People');
      await page.getByRole('button', { name: 'Accept carol' }).click();
      await page.getByRole('button', { name: 'Message carol' }).waitFor();
    }
    await createRoom(alice, 'plans', ['bob', 'carol']);
    await send(alice, 'plans', 'room hello from the browser');
    await message(alice, 'room hello from').locator('[data-tick]').waitFor();

    texts.push('room hello from the terminal');
    assert.equal(await carol('send', 'plans', 'room hello from the terminal'), 'sent\n');
    await message(alice, 'room hello from the terminal').waitFor();
    await open(bob, 'plans');
    await message(bob, 'room hello from the terminal').waitFor();
    await message(bob, 'room hello from the browser').waitFor();
    await message(alice, 'room hello from the browser').locator('[data-tick^="read by"]').waitFor();
    await shot(alice, 'room');

    const history = (await carol('--json', 'history', 'plans')).trim().split('\n').map((line) => JSON.parse(line));
    const fromAlice = history.find((entry) => entry.sender === 'alice');
    assert.equal(fromAlice?.text, 'room hello from the browser', JSON.stringify(history));

    // carol starts her identity anew: the browsers say so in the room.
    await carol('reset-identity', '--yes');
    await send(alice, 'plans', 'after carol reset her identity');
    await alice.locator('.messages li.notice', { hasText: "carol's safety number changed" }).waitFor();

    // The safety number the browsers showed is natter-crypto's, computed natively.
    const session = await (
      await fetch(`${running.natterd.url}/v1/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'carol', password: 'carol-password', device_name: 'test' }),
      })
    ).json();
    const users = [];
    for (const name of ['alice', 'bob']) {
      const headers = { authorization: `Bearer ${session.token}` };
      const found = await (await fetch(`${running.natterd.url}/v1/users/by-username/${name}`, { headers })).json();
      const listing = await (await fetch(`${running.natterd.url}/v1/users/${found.user_id}/devices`, { headers })).json();
      users.push(found.user_id, listing.identity.master_key);
    }
    const { stdout } = await promisify(execFile)(join(target, 'debug/examples/safety_number'), users);
    assert.equal(stdout.trim(), running.safetyNumber);
  } finally {
    carol.remove();
  }
});

test("a room's owner removes a member, and a member leaves", async () => {
  await open(alice, 'plans');
  await alice.getByRole('button', { name: 'Members (3)' }).click();
  await alice.getByRole('button', { name: 'Remove carol' }).click();
  await alice.getByText('carol removed').waitFor();
  await open(bob, 'plans');
  await bob.getByRole('button', { name: /^Members/ }).click();
  await bob.getByRole('button', { name: 'Leave the room' }).click();
  await bob.getByText('Choose a conversation.').waitFor();
  // The room is gone from his list.
  await bob.locator('[data-conversation="plans"]').waitFor({ state: 'detached', timeout: 10_000 });
});

test('blocking and unblocking someone', async () => {
  await section(alice, 'People');
  await alice.getByRole('button', { name: 'Block carol' }).click();
  await alice.getByRole('region', { name: 'Blocked' }).getByRole('button', { name: 'Unblock carol' }).click();
  await alice.getByText('carol unblocked').waitFor();
  await alice.getByRole('region', { name: 'Blocked' }).waitFor({ state: 'detached' });
});

test('at phone size the layout fits, and it all works from the keyboard', async () => {
  await bob.setViewportSize({ width: 390, height: 844 });
  await bob.reload();
  await bob.getByRole('heading', { name: 'Conversations' }).waitFor();
  const fits = () => bob.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
  assert.ok(await fits(), 'no sideways scrolling');
  await bob.getByRole('banner').waitFor();
  await bob.getByRole('main').waitFor();
  // The focus order: the sections first, then the search and the conversations.
  await bob.locator('body').focus();
  const focused = [];
  for (let i = 0; i < 6; i++) {
    await bob.keyboard.press('Tab');
    focused.push(await bob.evaluate(() => document.activeElement.textContent || document.activeElement.getAttribute('name')));
  }
  assert.deepEqual(focused, ['Chats', 'People', 'Devices', 'Log out', 'query', 'Search']);
  await shot(bob, 'phone-conversations');

  await bob.locator('[data-conversation="alice"]').focus();
  await bob.keyboard.press('Enter');
  await bob.getByRole('heading', { name: 'alice', exact: true }).waitFor();
  // Focus moves to the conversation.
  await bob.waitForFunction(() => document.activeElement.id === 'chat-title');
  assert.ok(await bob.getByRole('heading', { name: 'Conversations' }).isHidden(), 'one column: the list makes way');
  assert.ok(await fits());
  await bob.keyboard.press('Tab');
  assert.equal(await bob.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Messages with alice');
  await bob.keyboard.press('Tab');
  assert.equal(await bob.evaluate(() => document.activeElement.getAttribute('name')), 'text', 'the composer follows the messages');
  await open(alice, 'bob');
  texts.push('typed on a phone-sized screen');
  await bob.keyboard.type('typed on a phone-sized screen');
  await bob.keyboard.press('Enter');
  await message(alice, 'typed on a phone-sized screen').waitFor();
  await shot(bob, 'phone-chat');
  await bob.getByRole('button', { name: 'Back to the conversations' }).press('Enter');
  await bob.getByRole('heading', { name: 'Conversations' }).waitFor();
});

test('older messages load on scrolling up', async () => {
  await open(alice, 'bob');
  for (let i = 1; i <= 55; i++) await send(alice, 'bob', `count ${i}.`);
  await message(alice, 'count 55.').locator('[data-tick]').waitFor();
  await open(bob, 'alice');
  await message(bob, 'count 55.').waitFor();
  assert.equal(await message(bob, 'count 1.').count(), 0, 'the newest 50 first');
  await bob.locator('.messages').evaluate((list) => list.scrollTo(0, 0));
  await message(bob, 'count 1.').waitFor();
  await message(bob, 'hello bob, from the browser').waitFor();
});

test('logging out leaves nothing readable; natterd never saw a text', async () => {
  const before = await indexedDbContents(alice);
  assert.ok(before.some((store) => store.records > 0), 'the store is in IndexedDB');
  for (const text of texts) {
    assert.ok(!before.some((store) => store.text.includes(text)), `IndexedDB holds "${text}" in the clear`);
  }
  const tokens = [...alice.tokens];
  assert.ok(tokens.length > 0);
  await section(alice, 'Chats');
  await alice.getByRole('button', { name: 'Log out' }).click();
  await alice.getByRole('heading', { name: 'Log in' }).waitFor();
  await shot(alice, 'logged-out');
  const secrets = [...texts, ...tokens, 'alice', 'bob', 'carol'];
  let left;
  for (let i = 0; i < 50; i++) {
    left = (await indexedDbContents(alice)).filter((store) => secrets.some((secret) => store.text.includes(secret)) || store.records > 0);
    if (left.length === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.deepEqual(left.map((store) => `${store.db}/${store.store}: ${store.records} records`), []);

  const files = readdirSync(running.natterd.dir).map((file) => readFileSync(join(running.natterd.dir, file), 'latin1'));
  const log = running.natterd.log();
  for (const text of texts) {
    assert.ok(!files.some((content) => content.includes(text)), `natterd's database holds "${text}"`);
    assert.ok(!log.includes(text), `natterd's log holds "${text}"`);
  }
  // natterd was down for a while: the browser logs the connections it refused.
  const unexpected = (page) => page.problems.filter((p) => !/WebSocket|net::ERR_CONNECTION_REFUSED/.test(p));
  assert.deepEqual({ alice: unexpected(alice), bob: unexpected(bob) }, { alice: [], bob: [] });
});
