// One conversation: its messages (older ones load on scrolling up), ticks, typing, notices, the
// composer, and the room's members.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Natter } from '../../pkg/natter_web.js';
import type { Live } from '../live';
import { type Conversation, type Mark, type Message, type Notice, type Pending, reason } from '../views';
import { Members } from './members';

const PAGE = 50;
/** Messages' times: one formatter for all (toLocaleTimeString makes one per call, ~0.3 ms each). */
const clock = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });

/** The notices a conversation shows: about its members and whom its messages reach. */
type ChatNotice = Exclude<Notice['notice'], { kind: 'new_device' }>;

interface Props {
  natter: Natter;
  live: Live;
  conversation: Conversation;
  onClose: () => void;
  /** Called after this user added or removed members. */
  onMembersChanged: () => void;
}

/** The others' marks as sorted seqs, so that each message counts them in O(log n), not O(n). */
interface Progress {
  read: number[];
  delivered: number[];
}

function progressOf(marks: Mark[]): Progress {
  const sorted = (seqs: number[]) => seqs.sort((a, b) => a - b);
  return { read: sorted(marks.map((m) => m.read_seq)), delivered: sorted(marks.map((m) => m.delivered_seq)) };
}

/** How many of the sorted `seqs` are at least `seq`. */
function atLeast(seqs: number[], seq: number): number {
  let [low, high] = [0, seqs.length];
  while (low < high) {
    const middle = (low + high) >> 1;
    if (seqs[middle] < seq) low = middle + 1;
    else high = middle;
  }
  return seqs.length - low;
}

/** How far the others got with one of my messages, as ticks and words. */
function ticks(seq: number, progress: Progress, room: boolean): { mark: string; label: string } {
  const others = progress.read.length;
  const read = atLeast(progress.read, seq);
  if (room && others > 0) {
    if (read > 0) return { mark: '✓✓', label: `read by ${read} of ${others}` };
  } else if (others > 0 && read === others) {
    return { mark: '✓✓', label: 'read' };
  }
  if (others > 0 && atLeast(progress.delivered, seq) === others) return { mark: '✓✓', label: 'delivered' };
  return { mark: '✓', label: 'sent' };
}

/** The open conversation. */
export function Chat({ natter, live, conversation, onClose, onMembersChanged }: Props) {
  const id = conversation.id;
  const me = natter.userId;
  const others = conversation.members.filter((m) => m.user_id !== me);
  const room = conversation.kind === 'room';
  const [messages, setMessages] = useState<Message[]>([]);
  const [pending, setPending] = useState<Pending[]>([]);
  const [failed, setFailed] = useState<Record<string, string>>({});
  const [marks, setMarks] = useState<Mark[]>([]);
  const [typing, setTyping] = useState<Record<string, number>>({});
  const [notices, setNotices] = useState<ChatNotice[]>([]);
  const [limit, setLimit] = useState(PAGE);
  const [error, setError] = useState<string | null>(null);
  const [showMembers, setShowMembers] = useState(false);
  const list = useRef<HTMLOListElement>(null);
  const title = useRef<HTMLHeadingElement>(null);
  const keepFromBottom = useRef<number | null>(null);
  const typingSince = useRef(0);
  // The live events' handlers load with the limit scrolling set last.
  const limitNow = useRef(limit);
  limitNow.current = limit;

  const load = async () => {
    const [shown, queued] = await Promise.all([natter.messages(id, limitNow.current), natter.pending(id)]);
    setMessages(shown);
    setPending(queued);
    const last = shown[shown.length - 1]?.seq ?? 0;
    if (document.visibilityState === 'visible' && last > (await natter.readUpTo(id))) {
      await natter.markRead(id, last).catch(() => {});
    }
  };
  const otherIds = others.map((m) => m.user_id);
  const loadMarks = () => natter.marks(id, otherIds).then(setMarks, () => {});

  useEffect(() => {
    load().catch((failure: unknown) => setError(reason(failure)));
  }, [id, limit]);
  // Keyboard and screen reader users land on the conversation they opened.
  useEffect(() => title.current?.focus(), [id]);
  useEffect(() => {
    loadMarks();
    return live.subscribe((event) => {
      switch (event.type) {
        case 'message':
        case 'sent':
          if (event.conversation_id === id) load();
          break;
        case 'failed':
          setFailed((was) => ({ ...was, [event.client_msg_id]: event.code }));
          load();
          break;
        case 'connected':
          load();
          loadMarks();
          break;
        case 'receipt':
          if (event.conversation_id !== id || event.user_id === me) break;
          setMarks((was) => {
            const other = was.find((m) => m.user_id === event.user_id);
            const next = {
              user_id: event.user_id,
              delivered_seq: Math.max(other?.delivered_seq ?? 0, event.delivered_seq),
              read_seq: Math.max(other?.read_seq ?? 0, event.read_seq),
            };
            return [...was.filter((m) => m.user_id !== event.user_id), next];
          });
          break;
        case 'typing':
          if (event.conversation_id !== id || event.user_id === me) break;
          setTyping((was) => {
            const next = { ...was };
            if (event.typing) next[event.user_id] = Date.now();
            else delete next[event.user_id];
            return next;
          });
          break;
        case 'notice': {
          const notice = event.notice;
          if (notice.kind === 'new_device') break;
          const here = notice.kind === 'members_added' ? notice.conversation_id === id : otherIds.includes(notice.user_id);
          if (here) setNotices((was) => [...was, notice]);
          break;
        }
      }
    });
  }, [id, live]);
  // Typing indicators fade when the typist goes quiet without saying so.
  useEffect(() => {
    const timer = setInterval(() => {
      setTyping((was) => {
        const fresh = Object.entries(was).filter(([, since]) => Date.now() - since < 8000);
        return fresh.length === Object.keys(was).length ? was : Object.fromEntries(fresh);
      });
    }, 2000);
    return () => clearInterval(timer);
  }, []);
  // Stay at the bottom for new messages; keep the place when older ones arrive above.
  useLayoutEffect(() => {
    const element = list.current;
    if (!element) return;
    if (keepFromBottom.current !== null) {
      element.scrollTop = element.scrollHeight - keepFromBottom.current;
      keepFromBottom.current = null;
    } else {
      element.scrollTop = element.scrollHeight;
    }
  }, [messages, pending, notices]);

  function scrolled() {
    const element = list.current;
    if (element && element.scrollTop === 0 && messages.length >= limit) {
      keepFromBottom.current = element.scrollHeight - element.scrollTop;
      setLimit(limit + PAGE);
    }
  }

  function typed(event: Event) {
    const text = (event.currentTarget as HTMLTextAreaElement).value;
    if (text && Date.now() - typingSince.current > 3000) {
      typingSince.current = Date.now();
      natter.typing(id, true);
    } else if (!text && typingSince.current) {
      typingSince.current = 0;
      natter.typing(id, false);
    }
  }

  async function send(event: Event) {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const input = form.elements.namedItem('text') as HTMLTextAreaElement;
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    typingSince.current = 0;
    natter.typing(id, false);
    try {
      await natter.sendText(id, text);
      setError(null);
    } catch (failure) {
      input.value = text;
      setError(reason(failure));
    }
    load();
  }

  function keyDown(event: KeyboardEvent) {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      (event.currentTarget as HTMLTextAreaElement).form?.requestSubmit();
    }
  }

  // Rooms have up to 1,000 members: names and marks are looked up, not searched, per message.
  const names = useMemo(() => new Map(conversation.members.map((m) => [m.user_id, m.name])), [conversation.members]);
  const progress = useMemo(() => progressOf(marks), [marks]);
  const nameOf = (user: string) => (user === me ? 'You' : (names.get(user) ?? 'Someone'));
  // Said with the names as they are now (the members list catches up with people just added).
  const say = (notice: ChatNotice) => {
    switch (notice.kind) {
      case 'safety_number_changed': {
        const held = notice.was_verified ? ': nothing is sent to them until you verify it again' : '';
        return `${nameOf(notice.user_id)}'s safety number changed${held}. Compare it under Devices.`;
      }
      case 'members_added':
        return `${notice.user_ids.map(nameOf).join(', ')} joined`;
      case 'devices_skipped': {
        const whose = nameOf(notice.user_id);
        return `${notice.devices.length} device(s) of ${whose} got no keys: ${whose} has not approved them.`;
      }
    }
  };
  const typists = Object.keys(typing).map(nameOf);
  const sentIds = new Set(messages.map((m) => m.client_msg_id));
  return (
    <section class="chat" aria-labelledby="chat-title">
      <header class="chat-head">
        <button type="button" class="back" onClick={onClose} aria-label="Back to the conversations">
          ←
        </button>
        <h2 id="chat-title" ref={title} tabIndex={-1}>
          {conversation.title}
        </h2>
        {room && (
          <button type="button" aria-expanded={showMembers} onClick={() => setShowMembers(!showMembers)}>
            Members ({conversation.members.length})
          </button>
        )}
      </header>
      {showMembers && <Members natter={natter} conversation={conversation} onLeft={onClose} onChanged={onMembersChanged} />}
      <ol class="messages" ref={list} onScroll={scrolled} tabIndex={0} aria-label={`Messages with ${conversation.title}`}>
        {messages.length >= limit && <li class="older">Scroll up for older messages</li>}
        {messages.map((message) => {
          const mine = message.sender_id === me;
          const tick = mine ? ticks(message.seq, progress, room) : null;
          return (
            <li key={message.seq} class={mine ? 'mine' : 'theirs'} data-seq={message.seq}>
              <span class="sender">{nameOf(message.sender_id)}</span>
              {message.text !== null ? (
                <span class="text">{message.text}</span>
              ) : (
                <span class="text undecryptable" data-unable-to-decrypt={message.unable_to_decrypt}>
                  Unable to decrypt this message ({message.unable_to_decrypt})
                </span>
              )}
              <span class="meta">
                <time dateTime={new Date(message.server_ts).toISOString()}>
                  {clock.format(message.server_ts)}
                </time>
                {tick && (
                  <span class={`tick ${tick.label.startsWith('read') ? 'read' : ''}`} data-tick={tick.label} aria-label={tick.label} title={tick.label}>
                    {tick.mark} {room && tick.label.startsWith('read') ? tick.label : ''}
                  </span>
                )}
              </span>
            </li>
          );
        })}
        {pending
          .filter((queued) => !sentIds.has(queued.client_msg_id))
          .map((queued) => (
            <li key={queued.client_msg_id} class="mine pending">
              <span class="sender">You</span>
              <span class="text">{queued.text}</span>
              <span class="meta">
                {failed[queued.client_msg_id] ? (
                  <span role="alert">Not sent: {failed[queued.client_msg_id]}</span>
                ) : (
                  <span class="tick" data-tick="pending" aria-label="waiting to be sent" title="waiting to be sent">
                    ⏱
                  </span>
                )}
              </span>
            </li>
          ))}
        {notices.map((notice, i) => (
          <li key={`notice-${i}`} class="notice" role="note" data-notice={notice.kind}>
            {say(notice)}
          </li>
        ))}
      </ol>
      <p class="typing" aria-live="polite">
        {typists.length > 0 && `${typists.join(', ')} ${typists.length === 1 ? 'is' : 'are'} typing…`}
      </p>
      {error && <p role="alert">{error}</p>}
      <form class="composer" onSubmit={send}>
        <label>
          <span class="sr-only">Message to {conversation.title}</span>
          <textarea name="text" rows={1} placeholder="Message" onInput={typed} onKeyDown={keyDown} maxLength={4000} />
        </label>
        <button type="submit">Send</button>
      </form>
    </section>
  );
}
