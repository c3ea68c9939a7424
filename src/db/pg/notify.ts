/**
 * LISTEN/NOTIFY between instances: a wake-up or an event raised on one instance reaches every instance
 * listening on the channel, within milliseconds. Knows nothing of jobs: the queue and the realtime hub
 * choose their channels and payloads.
 */
import { SQL } from "bun";
import type { Sql } from "../sql";

/**
 * The largest payload `notify` sends, in UTF-8 bytes. PostgreSQL refuses payloads of 8,000 bytes or more;
 * the margin leaves room for the channel name. Send ids and small facts; the listener reads the rest back.
 */
export const NOTIFY_PAYLOAD_LIMIT = 7_900;

/** PostgreSQL truncates identifiers, channel names included, at 63 bytes: a longer one would be another channel. */
const CHANNEL_LIMIT = 63;

/** A payload over NOTIFY_PAYLOAD_LIMIT: the caller sends ids and lets the listener read the rest back. */
export class NotifyPayloadTooLarge extends Error {
  override readonly name = "NotifyPayloadTooLarge";
  readonly bytes: number;
  constructor(channel: string, bytes: number) {
    super(
      `NOTIFY payload on "${channel}" is ${bytes} bytes, over the limit of ${NOTIFY_PAYLOAD_LIMIT}: send ids and read the rest back`,
    );
    this.bytes = bytes;
  }
}

/** What these primitives log through (a pino logger fits). */
export type PgLog = {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
};

export type NotifierOptions = {
  /** The database the LISTEN connection opens (the instance's DATABASE_URL). */
  url: string;
  /** Where `notify` runs: inside a transaction of this client, the notification is sent when it commits. */
  sql: Sql;
  /** Shown in pg_stat_activity. @defaultValue "easel-listen" */
  applicationName?: string;
  /** Handler errors and lost connections are logged here. */
  log?: PgLog;
};

export type Subscription = { readonly channel: string; unlisten(): Promise<void> };

/**
 * One LISTEN connection per instance (Bun's `sql.listen`: a dedicated connection, reconnected with
 * exponential backoff and every channel subscribed again when it drops), and `notify` through the
 * instance's `Sql`.
 *
 * Notifications sent while the connection is down are lost (PostgreSQL queues them only for sessions that
 * are listening): `onReconnect` tells a listener to read back what it may have missed.
 */
export class PgNotifier {
  readonly #listener: SQL;
  readonly #sql: Sql;
  readonly #log: NotifierOptions["log"];
  readonly #reconnected = new Set<() => void>();
  #connected = false;
  #closing = false;
  #lostSince: number | null = null;
  /** Live `listen` registrations, and how many of them are still to be subscribed again after a loss. */
  #registrations = 0;
  #resubscribing = 0;

  constructor(opts: NotifierOptions) {
    this.#sql = opts.sql;
    this.#log = opts.log;
    this.#listener = new SQL(opts.url, {
      // The LISTEN connection is the only one this client opens.
      max: 1,
      connection: { application_name: opts.applicationName ?? "easel-listen" },
      onclose: (err) => this.#lost(err),
    });
  }

  /** Whether the LISTEN connection is up and subscribed (false before the first `listen`). */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Calls `handler` with the payload of every notification on `channel`, from any instance, this one
   * included. Resolves once the server has acknowledged the LISTEN. A throwing handler is logged; the
   * others still run.
   */
  async listen(channel: string, handler: (payload: string) => void): Promise<Subscription> {
    checkChannel(channel);
    const safe = (payload: string) => {
      try {
        handler(payload);
      } catch (err) {
        this.#log?.error({ err, channel }, "a NOTIFY handler threw");
      }
    };
    const sub = await this.#listener.listen(channel, safe, () => this.#subscribed());
    this.#registrations++;
    let removed = false;
    return {
      channel,
      unlisten: async () => {
        if (removed) return;
        removed = true;
        this.#registrations--;
        await sub.unlisten();
      },
    };
  }

  /** Runs `fn` after each reconnection, once the channels are subscribed again. Returns a remover. */
  onReconnect(fn: () => void): () => void {
    this.#reconnected.add(fn);
    return () => this.#reconnected.delete(fn);
  }

  /**
   * Sends `payload` to every listener of `channel`. Inside a transaction of the `Sql` it is sent when that
   * commits, and never when it rolls back. Throws NotifyPayloadTooLarge over NOTIFY_PAYLOAD_LIMIT bytes.
   */
  async notify(channel: string, payload = ""): Promise<void> {
    checkChannel(channel);
    const bytes = Buffer.byteLength(payload, "utf8");
    if (bytes > NOTIFY_PAYLOAD_LIMIT) throw new NotifyPayloadTooLarge(channel, bytes);
    await this.#sql.get("SELECT pg_notify(?, ?)", [channel, payload]);
  }

  /** Closes the LISTEN connection. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#reconnected.clear();
    await this.#listener.close();
    this.#connected = false;
  }

  /** Bun's acknowledgement of one registration's LISTEN, at first and after each reconnection. */
  #subscribed(): void {
    if (this.#lostSince === null) {
      this.#connected = true;
      return;
    }
    // Connected again once every channel is subscribed again: a handler reading back must miss none.
    if (--this.#resubscribing > 0) return;
    this.#connected = true;
    this.#log?.warn({ downMs: Date.now() - this.#lostSince }, "LISTEN connection restored");
    this.#lostSince = null;
    for (const fn of this.#reconnected) {
      try {
        fn();
      } catch (err) {
        this.#log?.error({ err }, "a reconnect handler threw");
      }
    }
  }

  #lost(err: Error | null): void {
    if (this.#closing || this.#lostSince !== null || this.#registrations === 0) return;
    this.#connected = false;
    this.#lostSince = Date.now();
    this.#resubscribing = this.#registrations;
    this.#log?.warn({ err }, "LISTEN connection lost; reconnecting");
  }
}

function checkChannel(channel: string): void {
  const bytes = Buffer.byteLength(channel, "utf8");
  if (bytes === 0 || bytes > CHANNEL_LIMIT) {
    throw new RangeError(`NOTIFY channel "${channel}" must be 1 to ${CHANNEL_LIMIT} bytes long`);
  }
}
