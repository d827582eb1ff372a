// The signed-in app: a bar with the connection state and the sections (chats, people, devices),
// the recovery key once, and approval until this device is approved.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { Live } from '../live';
import type { Session } from '../session';
import { code, reason } from '../views';
import { Approve } from './approve';
import { Chats } from './chats';
import { Devices } from './devices';
import { People } from './people';

type Section = 'chats' | 'people' | 'devices';

/** The screens of a logged-in device; `onLogout` logs out and forgets it. */
export function Home({ session, onLogout }: { session: Session; onLogout: (live: Live) => Promise<void> }) {
  const { natter } = session;
  const [ended, setEnded] = useState<string | null>(null);
  const live = useMemo(
    () =>
      new Live(natter, (error) =>
        setEnded(code(error) === 'unauthorized' ? 'This device was logged out elsewhere.' : reason(error)),
      ),
    [natter],
  );
  const [connected, setConnected] = useState(live.connected);
  const [approved, setApproved] = useState<boolean | null>(null);
  const [recoveryKey, setRecoveryKey] = useState(session.recoveryKey);
  const [section, setSection] = useState<Section>('chats');
  const [openConversation, setOpenConversation] = useState<string | null>(null);
  const [announcement, setAnnouncement] = useState('');
  const [leaving, setLeaving] = useState(false);

  useEffect(() => {
    natter.isApproved().then(setApproved);
    const unsubscribe = live.subscribe((event) => {
      if (event.type === 'connected' || event.type === 'disconnected') setConnected(event.type === 'connected');
      if (event.type === 'approval' && event.step === 'done') natter.isApproved().then(setApproved);
      if (event.type === 'message' && event.sender_id !== natter.userId) {
        setAnnouncement(event.text === null ? 'New message (unable to decrypt)' : `New message: ${event.text}`);
      }
    });
    setConnected(live.connected);
    return unsubscribe;
  }, [live, natter]);

  const openChat = (conversation: string) => {
    setOpenConversation(conversation);
    setSection('chats');
  };
  async function leave() {
    setLeaving(true);
    await onLogout(live);
  }

  const tab = (id: Section, label: string) => (
    <li>
      <button type="button" aria-current={section === id ? 'page' : undefined} onClick={() => setSection(id)}>
        {label}
      </button>
    </li>
  );
  return (
    <>
      <header class="bar">
        <h1>Natter</h1>
        <p class="who">
          <span data-username>{session.username}</span>{' '}
          <span class={connected ? 'online' : 'offline'} data-connection={connected ? 'online' : 'offline'}>
            {connected ? 'Connected' : 'Offline: messages wait and go out when back'}
          </span>
        </p>
        <nav aria-label="Sections">
          <ul>
            {tab('chats', 'Chats')}
            {tab('people', 'People')}
            {tab('devices', 'Devices')}
            <li>
              <button type="button" onClick={leave} disabled={leaving}>
                Log out
              </button>
            </li>
          </ul>
        </nav>
      </header>
      <div class="sr-only" aria-live="polite" aria-atomic="true">
        {announcement}
      </div>
      <main id="main">
        {ended && <p role="alert">{ended} Log out to start again.</p>}
        {recoveryKey && (
          <section aria-labelledby="recovery-title" class="card">
            <h2 id="recovery-title">Your recovery key</h2>
            <p>
              Write it down and keep it safe. It approves your new devices and restores your identity. It is shown
              only this once.
            </p>
            <p class="key" data-recovery-key>
              {recoveryKey}
            </p>
            <button type="button" onClick={() => setRecoveryKey(null)}>
              I wrote it down
            </button>
          </section>
        )}
        {!recoveryKey && approved === false && <Approve natter={natter} live={live} onApproved={() => setApproved(true)} />}
        {!recoveryKey && approved && section === 'chats' && (
          <Chats natter={natter} live={live} open={openConversation} onOpen={setOpenConversation} />
        )}
        {!recoveryKey && approved && section === 'people' && <People natter={natter} onChat={openChat} />}
        {!recoveryKey && approved && section === 'devices' && <Devices natter={natter} live={live} />}
      </main>
    </>
  );
}
