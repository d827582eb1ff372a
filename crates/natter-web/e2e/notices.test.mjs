// What a conversation tells its members about whom messages reach and what cannot be read:
// someone added to a room, a device left out because its owner has not approved it, a message
// the natterd operator forged, and a device whose token the operator revoked.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, createRoom, login, message, open, openApp, person, screenshots, send, setUp } from './browser.mjs';

const running = setUp();
const shot = (page, name) => page.screenshot({ path: join(screenshots, `${name}.png`) });
/** A notice of this kind in the open conversation. */
const notice = (page, kind, text) => page.locator(`.messages li.notice[data-notice="${kind}"]`, { hasText: text });
let ann;
let ben;
let cyd;

test('a member adds someone to a room from the app, and the others are told who joined', async () => {
  [ann, ben, cyd] = [await person(running, 'ann'), await person(running, 'ben'), await person(running, 'cyd')];
  await connect(ann, ben, 'ben', 'ann');
  await connect(ann, cyd, 'cyd', 'ann');
  await createRoom(ann, 'crew', ['ben']);
  await send(ann, 'crew', 'crew, just us two');
  await open(ben, 'crew');
  await send(ben, 'crew', 'ben says hi to the crew');
  await message(ann, 'ben says hi').waitFor();

  await ann.getByRole('button', { name: 'Members (2)' }).click();
  await ann.getByLabel('Add a connection').selectOption({ label: 'cyd' });
  await ann.getByRole('button', { name: 'Add', exact: true }).click();
  await ann.getByText('Added').waitFor();
  await ann.getByRole('button', { name: 'Members (3)' }).waitFor();

  // ben's next message is the first to the room as it is now: his device says who is new.
  await send(ben, 'crew', 'welcome to the crew');
  await notice(ben, 'members_added', 'cyd joined').waitFor();
  await shot(ben, 'members-added');
  await open(cyd, 'crew');
  await message(cyd, 'welcome to the crew').locator('.text:not(.undecryptable)').waitFor();
  assert.deepEqual([...ann.problems, ...ben.problems, ...cyd.problems], []);
});

test("a device its owner has not approved gets no keys, and the sender is told", async () => {
  // ben logs in on another browser and leaves that device waiting for approval.
  const { context, page: unapproved } = await openApp(running);
  await login(unapproved, 'ben', 'ben-password');
  await unapproved.getByRole('heading', { name: 'Approve this device' }).waitFor();

  await open(ann, 'crew');
  await send(ann, 'crew', 'only for approved devices');
  await notice(ann, 'devices_skipped', "1 device(s) of ben got no keys: ben has not approved them.").waitFor();
  await shot(ann, 'devices-skipped');
  await message(ben, 'only for approved devices').waitFor();
  await context.close();
});

test("a message the operator forged shows inline as unable to decrypt", async () => {
  await open(ben, 'crew');
  // natterd's operator appends a message to the room as if ann's device sent it: the session
  // id of her last one, but a Megolm message of its own.
  await running.natterd.operator(`
    INSERT INTO messages (conversation_id, seq, sender_id, sender_device, client_msg_id, client_ts, server_ts, ciphertext)
      SELECT m.conversation_id, c.last_seq + 1, m.sender_id, m.sender_device, 'forged-by-the-operator', NULL,
             m.server_ts + 1, json_object('v', 1, 's', json_extract(m.ciphertext, '$.s'), 'm', 'AwgAEhBmb3JnZWQgYnkgdGhlIG9wZXJhdG9y')
      FROM messages m JOIN conversations c ON c.id = m.conversation_id
      WHERE c.name = 'crew' AND m.sender_id = (SELECT id FROM users WHERE username = 'ann')
      ORDER BY m.seq DESC LIMIT 1;
    UPDATE conversations SET last_seq = last_seq + 1, last_ts = last_ts + 1 WHERE name = 'crew';
  `);
  const forged = ben.locator('.messages li .undecryptable');
  await forged.waitFor({ timeout: 30_000 });
  assert.equal(await forged.getAttribute('data-unable-to-decrypt'), 'corrupt');
  assert.match(await forged.textContent(), /^Unable to decrypt this message \(corrupt\)$/);
  assert.equal(await ben.locator('.messages li').filter({ hasText: 'Unable to decrypt' }).count(), 1);
  await shot(ben, 'unable-to-decrypt');
  // The room goes on: what ann sends next reads as usual.
  await ben.locator('[data-connection="online"]').waitFor({ timeout: 30_000 });
  await ann.locator('[data-connection="online"]').waitFor({ timeout: 30_000 });
  await send(ann, 'crew', 'after the forgery');
  await message(ben, 'after the forgery').waitFor();
  const unexpected = (page) => page.problems.filter((p) => !/WebSocket|net::ERR_CONNECTION_REFUSED/.test(p));
  assert.deepEqual(unexpected(ben), []);
});

test('a token revoked while the browser was away is refused at the WebSocket, and the app says so', async () => {
  const sockets = [];
  ben.on('websocket', (socket) => sockets.push(socket));
  await running.natterd.operator(
    "UPDATE devices SET token_hash = 'revoked-' || id WHERE user_id = (SELECT id FROM users WHERE username = 'ben');",
  );
  await ben.getByText('This device was logged out elsewhere.').waitFor({ timeout: 30_000 });
  await ben.locator('[data-connection="offline"]').waitFor();
  assert.ok(sockets.length > 0, 'the browser tried its token again');
  const tried = sockets.length;
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.equal(sockets.length, tried, 'the live loop ended: no more connections');
  await shot(ben, 'revoked');
});
