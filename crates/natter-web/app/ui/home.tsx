// The screen of a logged-in device: who and which device, its published key, log out.
import { useEffect, useState } from 'preact/hooks';
import { ready } from '../core';
import { logout, type Session } from '../session';

/** The logged-in screen; calls `onLogout` once the server forgot the device. */
export function Home({ session, onLogout }: { session: Session; onLogout: () => void }) {
  const [fingerprint, setFingerprint] = useState('');
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    ready.then((core) => setFingerprint(core.fingerprint(session.device.ed25519())));
  }, [session]);

  async function leave() {
    try {
      await logout(session);
      onLogout();
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
    }
  }

  return (
    <section aria-labelledby="home-title">
      <h2 id="home-title">Signed in as {session.username}</h2>
      <dl>
        <dt>This device</dt>
        <dd data-device-id={session.deviceId}>{session.deviceId}</dd>
        <dt>Its signing key (published; private keys stay in this page's wasm memory)</dt>
        <dd data-ed25519={session.device.ed25519()}>{fingerprint}</dd>
      </dl>
      <button type="button" onClick={leave}>
        Log out
      </button>
      {error && <p role="alert">{error}</p>}
    </section>
  );
}
