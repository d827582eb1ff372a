// Registering and logging in from the app, as two people in two browser contexts: the device
// keys made in wasm are published through the REST API, and the other browser's wasm checks
// them as natterd hands them out.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openApp, screenshots, setUp } from './browser.mjs';

const running = setUp();

/** A person's own browser context with the app open. */
async function person() {
  return (await openApp(running)).page;
}

async function register(page, username, password) {
  await page.getByRole('button', { name: 'New here? Create an account' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
}

async function login(page, username, password) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** The REST API from outside the browsers, as another device of `username`. */
async function api(username, password) {
  const post = await fetch(`${running.natterd.url}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password, device_name: 'test' }),
  });
  assert.equal(post.status, 201);
  const session = await post.json();
  return {
    userId: session.user_id,
    async devices() {
      const response = await fetch(`${running.natterd.url}/v1/users/${session.user_id}/devices`, {
        headers: { authorization: `Bearer ${session.token}` },
      });
      assert.equal(response.status, 200);
      return (await response.json()).devices;
    },
  };
}

test('two people register and log in in two browsers; their wasm-made keys are published', async () => {
  const [alice, bob] = [await person(), await person()];
  await alice.screenshot({ path: join(screenshots, 'login.png') });
  await register(alice, 'alice', 'alice-password');
  await alice.getByText('Account alice created').waitFor();
  await login(alice, 'alice', 'alice-password');
  await alice.getByRole('heading', { name: 'Signed in as alice' }).waitFor();
  await alice.screenshot({ path: join(screenshots, 'signed-in.png') });

  await register(bob, 'alice', 'bob-password');
  assert.match(await bob.getByRole('alert').textContent(), /taken/);
  await bob.getByLabel('Username').fill('bob');
  await bob.getByRole('button', { name: 'Create account' }).click();
  await bob.getByText('Account bob created').waitFor();
  await login(bob, 'bob', 'not-bobs-password');
  assert.match(await bob.getByRole('alert').textContent(), /password/);
  await bob.screenshot({ path: join(screenshots, 'login-refused.png') });
  await login(bob, 'bob', 'bob-password');
  await bob.getByRole('heading', { name: 'Signed in as bob' }).waitFor();

  const browserDevice = await alice.locator('[data-device-id]').getAttribute('data-device-id');
  const ed25519 = await alice.locator('[data-ed25519]').getAttribute('data-ed25519');
  const server = await api('alice', 'alice-password');
  const published = (await server.devices()).find((device) => device.device_id === browserDevice);
  assert.ok(published, 'the browser is one of alice\'s devices');
  assert.equal(published.identity_keys.ed25519, ed25519);
  const verified = await bob.evaluate(
    async ([user, device]) => {
      const core = await (await import(document.querySelector('script[type=module]').src)).ready;
      return core.verifyDevice(user, device);
    },
    [server.userId, JSON.stringify(published)],
  );
  assert.equal(verified, true, "bob's wasm verifies the keys alice's wasm made");

  await alice.getByRole('button', { name: 'Log out' }).click();
  await alice.getByRole('heading', { name: 'Log in' }).waitFor();
  const left = (await server.devices()).map((device) => device.device_id);
  assert.ok(!left.includes(browserDevice), 'logging out removed the device');
  assert.deepEqual(alice.problems, []);
  assert.deepEqual(
    bob.problems.filter((problem) => !problem.includes('status of 40')),
    [],
    'only the refused requests (409, 401) show in the console',
  );
});
