// The first screen: create an account, or log in as a new device of this browser.
import { useState } from 'preact/hooks';
import { login, register, type Session } from '../session';
import { reason } from '../views';

/** Why the device this browser kept did not open (an error code), in words. */
function lostDevice(lost: string): string {
  const why = lost === 'wrong_passphrase' ? 'its key no longer opens its store' : 'its store is gone';
  return `This browser's saved device could not be opened (${why}), so it was removed. Log in again.`;
}

/** Account forms; calls `onLogin` with the new session. `lost` is why a kept device did not open. */
export function Welcome({ onLogin, lost }: { onLogin: (session: Session) => void; lost?: string }) {
  const [mode, setMode] = useState<'login' | 'register'>('login');
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const username = String(form.get('username'));
    const password = String(form.get('password'));
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      if (mode === 'register') {
        await register(username, password);
        setMode('login');
        setNotice(`Account ${username} created. Log in to use it on this browser.`);
      } else {
        onLogin(await login(username, password, String(form.get('device'))));
      }
    } catch (failure) {
      setError(reason(failure));
    } finally {
      setBusy(false);
    }
  }

  const registering = mode === 'register';
  return (
    <section aria-labelledby="welcome-title" class="card">
      <h2 id="welcome-title">{registering ? 'Create an account' : 'Log in'}</h2>
      <form onSubmit={submit}>
        <label>
          Username
          <input name="username" autoComplete="username" required minLength={3} maxLength={32} />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={registering ? 'new-password' : 'current-password'}
            required
            minLength={8}
          />
        </label>
        {!registering && (
          <label>
            This device's name
            <input name="device" defaultValue="Browser" required maxLength={64} />
          </label>
        )}
        <button type="submit" disabled={busy}>
          {registering ? 'Create account' : 'Log in'}
        </button>
      </form>
      {error && <p role="alert">{error}</p>}
      {notice && <p role="status">{notice}</p>}
      {lost && !notice && (
        <p role="status" data-lost={lost}>
          {lostDevice(lost)}
        </p>
      )}
      <p>
        <button
          type="button"
          class="link"
          onClick={() => {
            setMode(registering ? 'login' : 'register');
            setError(null);
          }}
        >
          {registering ? 'I have an account: log in' : 'New here? Create an account'}
        </button>
      </p>
    </section>
  );
}
