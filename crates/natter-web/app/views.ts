// The shapes the core returns (crates/natter-web/src/views.rs and natter-proto's documents).

/** A message in this device's store. */
export interface Message {
  conversation_id: string;
  seq: number;
  sender_id: string;
  sender_device_id: string;
  client_msg_id: string;
  server_ts: number;
  text: string | null;
  unable_to_decrypt: string | null;
}

/** A text queued and not yet acked. */
export interface Pending {
  client_msg_id: string;
  text: string;
}

/** A member of a conversation with the name they are shown by. */
export interface Member {
  user_id: string;
  name: string;
}

/** A conversation in the list. */
export interface Conversation {
  id: string;
  kind: 'direct' | 'room';
  title: string;
  members: Member[];
  unread: number;
  last_seq: number;
}

/** How far a member got in a conversation. */
export interface Mark {
  user_id: string;
  delivered_seq: number;
  read_seq: number;
}

/** A user's profile. */
export interface Profile {
  user_id: string;
  username: string;
  display_name: string;
}

/** One side of a connection, with the other user's profile. */
export interface ConnectionEntry {
  user_id: string;
  state: string;
  profile: Profile;
}

/** Connections, requests both ways and blocks. */
export interface Connections {
  connections: ConnectionEntry[];
  incoming: ConnectionEntry[];
  outgoing: ConnectionEntry[];
  blocked: ConnectionEntry[];
}

/** A device as this device judges it. */
export interface DeviceStatus {
  device_id: string;
  name: string;
  ed25519: string | null;
  signed: boolean;
}

/** A notice natter-client keeps (safety number changed, a new device...). */
export interface Notice {
  notice:
    | { kind: 'safety_number_changed'; user_id: string; was_verified: boolean }
    | { kind: 'devices_skipped'; user_id: string; devices: string[] }
    | { kind: 'new_device'; device_id: string; name: string }
    | { kind: 'members_added'; conversation_id: string; user_ids: string[] };
  text: string;
}

/** A step of approving a device. */
export type Approval =
  | { step: 'requested'; flow_id: string; device_id: string }
  | { step: 'code'; flow_id: string; device_id: string; code: string }
  | { step: 'done'; flow_id: string; device_id: string }
  | { step: 'cancelled'; flow_id: string; reason: string };

/** A live event from `Natter.run`. */
export type LiveEvent =
  | { type: 'connected' }
  | { type: 'synced' }
  | { type: 'disconnected'; reason: string }
  | ({ type: 'message' } & Message)
  | { type: 'sent'; conversation_id: string; client_msg_id: string; seq: number }
  | { type: 'failed'; client_msg_id: string; code: string }
  | { type: 'receipt'; conversation_id: string; user_id: string; device_id: string; delivered_seq: number; read_seq: number }
  | ({ type: 'notice' } & Notice)
  | ({ type: 'approval' } & Approval)
  | { type: 'typing'; conversation_id: string; user_id: string; typing: boolean };

/** The message of an error the core raised. */
export function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The stable code of an error the core raised (`unauthorized`, `unreachable`...). */
export function code(error: unknown): string {
  return error instanceof Error ? error.name : '';
}
