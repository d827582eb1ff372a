// The app's frame: waits for the wasm core and this tab's hold on the store, then opens the
// device this browser logged in with, or shows the account forms.
import { useEffect, useState } from 'preact/hooks';
import { ready } from '../core';
import type { Live } from '../live';
import { holdStoreLock } from '../lock';
import { logout, resume, type Session } from '../session';
import { reason } from '../views';
import { Home } from './home';
import { Welcome } from './welcome';

type Status =
  | { state: 'loading' }
  | { state: 'elsewhere' }
  | { state: 'leaving' }
  | { state: 'ready'; session: Session | null; lost?: string }
  | { state: 'failed'; reason: string };

/** The whole app. */
export function App() {
  const [status, setStatus] = useState<Status>({ state: 'loading' });
  useEffect(() => {
    (async () => {
      await ready;
      // How long the first load took, for people and for the browser tests to read.
      performance.mark('natter:ready');
      if (!(await holdStoreLock())) return setStatus({ state: 'elsewhere' });
      setStatus({ state: 'ready', ...(await resume()) });
    })().catch((error: unknown) => setStatus({ state: 'failed', reason: reason(error) }));
  }, []);

  const signIn = (session: Session | null) => setStatus({ state: 'ready', session });
  const signOut = async (session: Session, live: Live) => {
    // The screens go first: nothing may call the device once it is freed. Then the live loop
    // ends, so that no request of it is in flight when the server forgets the token.
    setStatus({ state: 'leaving' });
    session.natter.stop();
    await Promise.race([live.done, new Promise((resolve) => setTimeout(resolve, 2000))]);
    await logout(session);
    signIn(null);
  };

  const session = status.state === 'ready' ? status.session : null;
  return (
    <>
      {!session && (
        <header class="bar">
          <h1>Natter</h1>
        </header>
      )}
      <p role="status" class={session ? 'sr-only' : 'core'} data-core={status.state === 'ready' ? 'ready' : status.state}>
        {status.state === 'loading' && 'Loading end-to-end encryption…'}
        {status.state === 'ready' && 'End-to-end encryption is ready in this browser.'}
        {status.state === 'leaving' && 'Logging out…'}
        {status.state === 'elsewhere' &&
          'Natter is open in another tab of this browser. Close it (or use that tab), then reload this one.'}
        {status.state === 'failed' && `This browser cannot run Natter: ${status.reason}`}
      </p>
      {status.state === 'ready' &&
        (session ? (
          <Home session={session} onLogout={(live) => signOut(session, live)} />
        ) : (
          <main id="main">
            <Welcome onLogin={signIn} lost={status.lost} />
          </main>
        ))}
    </>
  );
}
