// The chats section: the conversation list with unread counts and search, beside the open
// conversation.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Natter } from '../../pkg/natter_web.js';
import type { Live } from '../live';
import { type Conversation, type Message, reason } from '../views';
import { Chat } from './chat';

interface Props {
  natter: Natter;
  live: Live;
  open: string | null;
  onOpen: (conversation: string | null) => void;
}

/** The conversation list and the open conversation. */
export function Chats({ natter, live, open, onOpen }: Props) {
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [found, setFound] = useState<Message[] | null>(null);
  const refreshing = useRef<number | undefined>(undefined);
  // Bumped when this user changed a room's members: the list (and the open room) reloads.
  const [changes, setChanges] = useState(0);

  useEffect(() => {
    natter.conversations().then(setConversations);
    const refresh = () =>
      natter.refresh(open ?? undefined).then(
        (list: Conversation[]) => {
          setConversations(list);
          setError(null);
        },
        (failure: unknown) => setError(reason(failure)),
      );
    refresh();
    // Unread counts and new conversations come from the server: ask again when something moved.
    const unsubscribe = live.subscribe((event) => {
      const moved =
        event.type === 'message' ||
        event.type === 'connected' ||
        (event.type === 'receipt' && event.user_id === natter.userId) ||
        (event.type === 'notice' && event.notice.kind === 'members_added');
      if (moved) {
        clearTimeout(refreshing.current);
        refreshing.current = window.setTimeout(refresh, 300);
      }
    });
    return () => {
      unsubscribe();
      clearTimeout(refreshing.current);
    };
  }, [natter, live, open, changes]);

  async function search(event: Event) {
    event.preventDefault();
    const query = String(new FormData(event.currentTarget as HTMLFormElement).get('query')).trim();
    setFound(query ? await natter.search(query, undefined) : null);
  }

  const current = conversations.find((c) => c.id === open) ?? null;
  const titleOf = (id: string) => conversations.find((c) => c.id === id)?.title ?? 'a conversation';
  const nameOf = (message: Message) =>
    conversations.flatMap((c) => c.members).find((m) => m.user_id === message.sender_id)?.name ?? 'someone';
  return (
    <div class={current ? 'chats has-open' : 'chats'}>
      <nav class="list" aria-label="Conversations">
        <form role="search" onSubmit={search} class="inline">
          <label>
            <span class="sr-only">Search messages</span>
            <input name="query" type="search" placeholder="Search messages" />
          </label>
          <button type="submit">Search</button>
        </form>
        {found && (
          <section aria-labelledby="found-title">
            <h2 id="found-title">
              {found.length} {found.length === 1 ? 'message' : 'messages'} found
            </h2>
            <ul class="found">
              {found.map((message) => (
                <li key={`${message.conversation_id}:${message.seq}`}>
                  <button type="button" onClick={() => onOpen(message.conversation_id)}>
                    <span class="meta">
                      {nameOf(message)} in {titleOf(message.conversation_id)}
                    </span>
                    {message.text}
                  </button>
                </li>
              ))}
            </ul>
            <button type="button" class="link" onClick={() => setFound(null)}>
              Close the results
            </button>
          </section>
        )}
        <h2>Conversations</h2>
        {error && <p role="alert">{error}</p>}
        {conversations.length === 0 && <p>No conversations yet. Connect with someone under People.</p>}
        <ul class="conversations">
          {conversations.map((conversation) => (
            <li key={conversation.id}>
              <button
                type="button"
                aria-current={conversation.id === open ? 'true' : undefined}
                onClick={() => onOpen(conversation.id)}
                data-conversation={conversation.title}
              >
                <span>{conversation.title}</span>
                {conversation.unread > 0 && conversation.id !== open && (
                  <span class="unread" data-unread={conversation.unread}>
                    {conversation.unread} unread
                  </span>
                )}
              </button>
            </li>
          ))}
        </ul>
      </nav>
      {current ? (
        <Chat
          key={current.id}
          natter={natter}
          live={live}
          conversation={current}
          onClose={() => onOpen(null)}
          onMembersChanged={() => setChanges((was) => was + 1)}
        />
      ) : (
        <p class="placeholder">Choose a conversation.</p>
      )}
    </div>
  );
}
