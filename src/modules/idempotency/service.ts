import { and, eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { idempotencyKeys } from "../../db/schema";
import { ApiError, unprocessable } from "../../errors";

export type StoredResponse = {
  status: number;
  body: unknown;
  /** What is stored and replayed instead of `body`, when `body` holds a secret shown only once. */
  replayBody?: unknown;
};

/**
 * `Idempotency-Key` on POSTs: the first response for (caller, key) is stored and replayed for repeats;
 * the same key with a different body is refused.
 */
export class IdempotencyService {
  readonly #db: Db;
  readonly #now: () => number;

  constructor(db: Db, now: () => number = Date.now) {
    this.#db = db;
    this.#now = now;
  }

  async run(
    ownerId: string,
    key: string | undefined,
    request: unknown,
    fn: () => Promise<StoredResponse> | StoredResponse,
  ): Promise<StoredResponse> {
    if (!key) return fn();
    if (key.length > 255)
      throw unprocessable("invalid_idempotency_key", "Idempotency-Key is longer than 255 characters");
    const hash = new Bun.CryptoHasher("sha256").update(JSON.stringify(request ?? null)).digest("hex");
    const found = this.#db
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.ownerId, ownerId), eq(idempotencyKeys.key, key)))
      .get();
    if (found) {
      if (found.requestHash !== hash) {
        throw unprocessable(
          "idempotency_key_reused",
          "this Idempotency-Key was used with a different request",
        );
      }
      return { status: found.status, body: JSON.parse(found.response) };
    }
    let out: StoredResponse;
    try {
      out = await fn();
    } catch (err) {
      // Client errors are answers too: a repeat must get the same one, not a second attempt. Except 429: it
      // says "not now", so the repeat it asks for must be able to go through.
      if (!(err instanceof ApiError) || err.status >= 500 || err.status === 429) throw err;
      out = { status: err.status, body: err.toBody() };
    }
    this.#db
      .insert(idempotencyKeys)
      .values({
        key,
        ownerId,
        requestHash: hash,
        status: out.status,
        response: JSON.stringify(out.replayBody !== undefined ? out.replayBody : out.body),
        createdAt: this.#now(),
      })
      .onConflictDoNothing()
      .run();
    return out;
  }

  /** Forgets up to `limit` keys older than `maxAgeMs` (one slice of retention; the caller loops). Returns how many. */
  prune(maxAgeMs: number, limit: number): number {
    return this.#db.$client
      .query(
        `DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys
           INDEXED BY idempotency_keys_created_idx WHERE created_at < ? LIMIT ?)`,
      )
      .run(this.#now() - maxAgeMs, limit).changes;
  }
}

/**
 * Runs a POST handler through the idempotency store and sets the (possibly replayed) status. Typed by the
 * handler's body, so typed clients (Eden) see the route's real response; a replay is that body as stored
 * (JSON), or the stored client error under its own status.
 */
export async function idempotent<T>(
  svc: IdempotencyService,
  req: { ownerId: string; key: string | undefined; request: unknown; set: { status?: number | string } },
  fn: () => (StoredResponse & { body: T }) | Promise<StoredResponse & { body: T }>,
): Promise<T> {
  const out = await svc.run(req.ownerId, req.key, req.request, fn);
  req.set.status = out.status;
  return out.body as T;
}
