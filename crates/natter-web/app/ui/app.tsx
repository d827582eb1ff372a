// The app's frame: waits for the wasm core, then shows the account forms or the signed-in screen.
import { useEffect, useState } from 'preact/hooks';
import { ready } from '../core';
import type { Session } from '../session';
import { Home } from './home';
import { Welcome } from './welcome';

type Status = { state: 'loading' } | { state: 'ready' } | { state: 'failed'; reason: string };

/** The whole app. */
export function App() {
  const [status, setStatus] = useState<Status>({ state: 'loading' });
  const [session, setSession] = useState<Session | null>(null);
  useEffect(() => {
    ready.then(
      () => {
        // How long the first load took, for people and for the browser tests to read.
        performance.mark('natter:ready');
        setStatus({ state: 'ready' });
      },
      (error: unknown) => setStatus({ state: 'failed', reason: String(error) }),
    );
  }, []);
  return (
    <main>
      <h1>Natter</h1>
      <p role="status" data-core={status.state}>
        {status.state === 'loading' && 'Loading end-to-end encryption…'}
        {status.state === 'ready' && 'End-to-end encryption is ready in this browser.'}
        {status.state === 'failed' && `This browser cannot run Natter's encryption: ${status.reason}`}
      </p>
      {status.state === 'ready' &&
        (session ? (
          <Home session={session} onLogout={() => setSession(null)} />
        ) : (
          <Welcome onLogin={setSession} />
        ))}
    </main>
  );
}
