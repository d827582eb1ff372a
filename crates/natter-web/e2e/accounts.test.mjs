// Accounts from the app: the forms' refusals, and a second device of an account, which must be
// approved before it reads or sends: with the recovery key, or from the first device.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { login, openApp, person, register, screenshots, section, setUp } from './browser.mjs';

const running = setUp();

test('the forms say what was wrong', async () => {
  const { page, context } = await openApp(running);
  await page.screenshot({ path: join(screenshots, 'login.png') });
  await register(page, 'dora', 'dora-password');
  await page.getByText('Account dora created').waitFor();
  await register(page, 'dora', 'another-password');
  assert.match(await page.getByRole('alert').textContent(), /taken/);
  await page.getByRole('button', { name: 'I have an account: log in' }).click();
  await login(page, 'dora', 'not-doras-password');
  assert.match(await page.getByRole('alert').textContent(), /password/);
  await page.screenshot({ path: join(screenshots, 'login-refused.png') });
  assert.deepEqual(
    page.problems.filter((problem) => !problem.includes('status of 40')),
    [],
    'only the refused requests (409, 401) show in the console',
  );
  await context.close();
});

test('a second device is approved with the recovery key, or by the first device', async () => {
  const first = await person(running, 'erin');
  for (const how of ['recovery key', 'first device']) {
    const { page, context } = await openApp(running);
    await login(page, 'erin', 'erin-password');
    await page.getByRole('heading', { name: 'Approve this device' }).waitFor();
    if (how === 'recovery key') {
      await page.getByLabel('Recovery key').fill(first.recoveryKey);
      await page.getByRole('button', { name: 'Approve with the recovery key' }).click();
    } else {
      await page.screenshot({ path: join(screenshots, 'approve.png') });
      await section(first, 'Devices');
      await first.getByRole('button', { name: 'Approve Browser' }).click();
      const code = async (p) => (await p.locator('#approval-code strong').textContent()).trim();
      assert.equal(await code(first), await code(page));
      await first.getByRole('button', { name: 'They match' }).click();
      await page.getByRole('button', { name: 'They match' }).click();
    }
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    if (how === 'recovery key') {
      await page.getByRole('button', { name: 'Log out' }).click();
      await page.getByRole('heading', { name: 'Log in' }).waitFor();
    } else {
      // The first device removes the second, approved one: that takes the recovery key.
      await section(first, 'Devices');
      await first.getByRole('button', { name: 'Remove Browser' }).click();
      await first.getByLabel('Your recovery key, to remove Browser').fill(first.recoveryKey);
      await first.getByRole('button', { name: 'Remove it' }).click();
      await first.getByRole('button', { name: 'Remove Browser' }).waitFor({ state: 'detached' });
      await page.getByText('This device was logged out elsewhere.').waitFor();
    }
    await context.close();
  }
});

test('a request is rejected, then withdrawn', async () => {
  const [finn, gus] = [await person(running, 'finn'), await person(running, 'gus')];
  await section(finn, 'People');
  await finn.getByLabel('Find someone by username').fill('gus');
  await finn.getByRole('button', { name: 'Find', exact: true }).click();
  await finn.getByRole('button', { name: 'Ask gus to connect' }).click();
  await finn.getByText('Asked gus to connect').waitFor();
  await section(gus, 'People');
  await gus.getByRole('button', { name: 'Reject finn' }).click();
  await gus.getByText('Request declined').waitFor();
  await section(finn, 'People');
  const sent = finn.getByRole('region', { name: 'Requests you sent' });
  await sent.getByRole('button', { name: 'Withdraw gus (declined)' }).click();
  await finn.getByText('Request withdrawn').waitFor();
  await sent.waitFor({ state: 'detached' });
  await finn.context().close();
  await gus.context().close();
});
