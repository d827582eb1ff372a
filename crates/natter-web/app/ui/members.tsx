// A room's members: add connections, remove members, leave.
import { useEffect, useState } from 'preact/hooks';
import type { Natter } from '../../pkg/natter_web.js';
import { type Connections, type Conversation, reason } from '../views';

interface Props {
  natter: Natter;
  conversation: Conversation;
  onLeft: () => void;
  /** Called after a member was added or removed. */
  onChanged: () => void;
}

/** The members panel of a room. */
export function Members({ natter, conversation, onLeft, onChanged }: Props) {
  const [connections, setConnections] = useState<Connections | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  useEffect(() => {
    natter.connections().then(setConnections, (failure: unknown) => setError(reason(failure)));
  }, [natter]);

  const act = async (work: Promise<unknown>, said: string) => {
    setError(null);
    try {
      await work;
      setDone(said);
      onChanged();
    } catch (failure) {
      setError(reason(failure));
    }
  };
  const members = new Set(conversation.members.map((m) => m.user_id));
  const addable = connections?.connections.filter((c) => !members.has(c.user_id)) ?? [];
  return (
    <section class="members card" aria-label="Members">
      <ul>
        {conversation.members.map((member) => (
          <li key={member.user_id}>
            {member.user_id === natter.userId ? 'You' : member.name}{' '}
            {member.user_id === natter.userId ? (
              <button type="button" onClick={() => act(natter.removeMember(conversation.id, member.user_id), 'You left').then(onLeft)}>
                Leave the room
              </button>
            ) : (
              <button
                type="button"
                onClick={() => act(natter.removeMember(conversation.id, member.user_id), `${member.name} removed`)}
              >
                Remove {member.name}
              </button>
            )}
          </li>
        ))}
      </ul>
      {addable.length > 0 && (
        <form
          class="inline"
          onSubmit={(event) => {
            event.preventDefault();
            const user = String(new FormData(event.currentTarget as HTMLFormElement).get('user'));
            act(natter.addMembers(conversation.id, [user]), 'Added');
          }}
        >
          <label>
            Add a connection
            <select name="user">
              {addable.map((c) => (
                <option key={c.user_id} value={c.user_id}>
                  {c.profile.display_name || c.profile.username}
                </option>
              ))}
            </select>
          </label>
          <button type="submit">Add</button>
        </form>
      )}
      {done && <p role="status">{done}</p>}
      {error && <p role="alert">{error}</p>}
    </section>
  );
}
