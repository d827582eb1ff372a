// The live connection: `Natter.run` delivers events here, and every screen that shows live state
// subscribes to them.
import type { Natter } from '../pkg/natter_web.js';
import type { LiveEvent } from './views';

type Listener = (event: LiveEvent) => void;

/** Fans the device's live events out to the screens. */
export class Live {
  private listeners = new Set<Listener>();
  /** Whether the WebSocket is up (after `connected`, until `disconnected`). */
  connected = false;
  /** Settles once the connection's loop has ended (after `Natter.stop`, or a refusal). */
  readonly done: Promise<void>;

  /** Starts the connection; `ended` is called when the server no longer accepts the device. */
  constructor(natter: Natter, ended: (error: unknown) => void) {
    this.done = natter
      .run((event: LiveEvent) => {
        if (event.type === 'connected') this.connected = true;
        if (event.type === 'disconnected') this.connected = false;
        for (const listener of this.listeners) listener(event);
      })
      .catch(ended);
  }

  /** Calls `listener` with each event; returns the function that stops it. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
