import { RawJson } from '../http/raw-json';

/** An event as stored, with its payload as the JSON text it was accepted as. */
export interface StoredEvent {
  id: string;
  type: string;
  payloadText: string;
  createdAt: Date;
}

/** Maps a row selected with `payload::text AS payload_text`. */
export function toStoredEvent(row: {
  id: string;
  type: string;
  payload_text: string;
  created_at: Date;
}): StoredEvent {
  return {
    id: row.id,
    type: row.type,
    payloadText: row.payload_text,
    createdAt: row.created_at,
  };
}

/** The public shape of an event as JSON text: the payload exactly as it was accepted. */
export function eventJson(
  event: StoredEvent,
  extra: Record<string, unknown> = {},
): RawJson {
  return RawJson.object({
    id: event.id,
    type: event.type,
    payload: new RawJson(event.payloadText),
    createdAt: event.createdAt,
    ...extra,
  });
}
