// People: find someone by username, requests both ways, connections (message, block, remove),
// blocked users, and new rooms.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Natter } from '../../pkg/natter_web.js';
import { type ConnectionEntry, type Connections, reason } from '../views';

interface Props {
  natter: Natter;
  onChat: (conversation: string) => void;
}

const nameOf = (entry: ConnectionEntry) => entry.profile.display_name || entry.profile.username;

/** The people section. */
export function People({ natter, onChat }: Props) {
  const [connections, setConnections] = useState<Connections | null>(null);
  const [found, setFound] = useState<{ user_id: string; username: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const later = useRef<number | undefined>(undefined);
  const reload = () => natter.connections().then(setConnections, (failure: unknown) => setError(reason(failure)));
  useEffect(() => {
    reload();
    return () => clearTimeout(later.current);
  }, [natter]);

  async function act(work: () => Promise<unknown>, said: string) {
    setError(null);
    setDone(null);
    try {
      await work();
      setDone(said);
    } catch (failure) {
      setError(reason(failure));
    }
    await reload();
    // Blocks go out through the device's queue: the server shows them a moment later.
    later.current = window.setTimeout(reload, 1000);
  }

  async function lookup(event: Event) {
    event.preventDefault();
    const username = String(new FormData(event.currentTarget as HTMLFormElement).get('username')).trim();
    setError(null);
    setFound(null);
    try {
      setFound(await natter.lookup(username));
    } catch (failure) {
      setError(reason(failure));
    }
  }

  async function message(user: string) {
    try {
      const conversation = await natter.openDirect(user);
      onChat(conversation.id);
    } catch (failure) {
      setError(reason(failure));
    }
  }

  async function createRoom(event: Event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const members = form.getAll('member').map(String);
    try {
      const room = await natter.createRoom(String(form.get('name')), members);
      onChat(room.id);
    } catch (failure) {
      setError(reason(failure));
    }
  }

  const list = (title: string, entries: ConnectionEntry[], buttons: (entry: ConnectionEntry) => preact.JSX.Element) =>
    entries.length > 0 && (
      <section aria-label={title}>
        <h3>{title}</h3>
        <ul class="people">
          {entries.map((entry) => (
            <li key={entry.user_id} data-person={entry.profile.username}>
              <span>
                {nameOf(entry)} <span class="meta">@{entry.profile.username}</span>
              </span>
              <span class="actions">{buttons(entry)}</span>
            </li>
          ))}
        </ul>
      </section>
    );

  return (
    <div class="people-screen">
      <section aria-labelledby="people-title" class="card">
        <h2 id="people-title">People</h2>
        <form role="search" class="inline" onSubmit={lookup}>
          <label>
            Find someone by username
            <input name="username" required autoComplete="off" />
          </label>
          <button type="submit">Find</button>
        </form>
        {found && (
          <p data-found={found.username}>
            {found.username}{' '}
            <button
              type="button"
              onClick={() => act(() => natter.requestConnection(found.user_id), `Asked ${found.username} to connect`)}
            >
              Ask {found.username} to connect
            </button>
          </p>
        )}
        {done && <p role="status">{done}</p>}
        {error && <p role="alert">{error}</p>}
        {connections && (
          <>
            {list('Requests for you', connections.incoming, (entry) => (
              <>
                <button type="button" onClick={() => act(() => natter.answerRequest(entry.user_id, true), `Connected with ${nameOf(entry)}`)}>
                  Accept {entry.profile.username}
                </button>
                <button type="button" onClick={() => act(() => natter.answerRequest(entry.user_id, false), 'Request declined')}>
                  Reject {entry.profile.username}
                </button>
              </>
            ))}
            {list('Your connections', connections.connections, (entry) => (
              <>
                <button type="button" onClick={() => message(entry.user_id)}>
                  Message {entry.profile.username}
                </button>
                <button type="button" onClick={() => act(() => natter.block(entry.user_id, true), `${nameOf(entry)} blocked`)}>
                  Block {entry.profile.username}
                </button>
                <button type="button" onClick={() => act(() => natter.removeConnection(entry.user_id), `${nameOf(entry)} removed`)}>
                  Remove {entry.profile.username}
                </button>
              </>
            ))}
            {list('Requests you sent', connections.outgoing, (entry) => (
              <button type="button" onClick={() => act(() => natter.removeConnection(entry.user_id), 'Request withdrawn')}>
                Withdraw {entry.profile.username}
                {entry.state === 'rejected' ? ' (declined)' : ''}
              </button>
            ))}
            {list('Blocked', connections.blocked, (entry) => (
              <button type="button" onClick={() => act(() => natter.block(entry.user_id, false), `${nameOf(entry)} unblocked`)}>
                Unblock {entry.profile.username}
              </button>
            ))}
          </>
        )}
      </section>
      {connections && connections.connections.length > 0 && (
        <section aria-labelledby="room-title" class="card">
          <h2 id="room-title">New room</h2>
          <form onSubmit={createRoom}>
            <label>
              Room name
              <input name="name" required maxLength={64} />
            </label>
            <fieldset>
              <legend>Members</legend>
              {connections.connections.map((entry) => (
                <label key={entry.user_id} class="check">
                  <input type="checkbox" name="member" value={entry.user_id} /> {nameOf(entry)}
                </label>
              ))}
            </fieldset>
            <button type="submit">Create room</button>
          </form>
        </section>
      )}
    </div>
  );
}
