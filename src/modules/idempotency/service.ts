import type { Sql } from "../../db/sql";
import { ApiError, conflict, unprocessable } from "../../errors";
import { isDeadLocalWorker, makeWorkerId } from "../../queue";
import { IdempotencyRepository, type KeyRow } from "./repository";

/**
 * What a route's work records about its answer, inside the transaction that does the work: `commit` stores the
 * answer under the caller's `Idempotency-Key` so the key and the work commit (or roll back) together.
 * Without a key it does nothing.
 */
export type IdempotentAnswer = {
  /** Records `body` (or `replayBody`, when `body` holds a secret shown only once) as the answer. */
  commit(body: unknown, replayBody?: unknown): Promise<void>;
};

/** No `Idempotency-Key` on the request: nothing to record. */
export const NO_KEY: IdempotentAnswer = { commit: async () => undefined };

export type IdempotencyOptions = {
  /** How long a duplicate waits for the first request's answer before 409 `idempotency_in_progress`. */
  waitMs: number;
  /** A reservation older than this whose request never answered is taken over (its process died). */
  leaseMs: number;
  /** Who holds reservations made here (host:pid:…): a restart on this host can tell its dead holders. */
  workerId?: string;
  now?: () => number;
};

/** A stored answer replayed for a repeated key: the first answer's status and body, as an error so it short-circuits. */
export class IdempotentReplay extends ApiError {
  override name = "IdempotentReplay";
  readonly body: unknown;

  constructor(status: number, body: unknown) {
    super(status, "idempotent_replay", "replayed answer", { headers: { "idempotent-replayed": "true" } });
    this.body = body;
  }

  override toBody(): Record<string, unknown> {
    return this.body as Record<string, unknown>;
  }
}

/**
 * `Idempotency-Key` (DESIGN §9, the IETF Idempotency-Key draft): the first request with a key reserves it
 * atomically before its handler runs; its answer is stored in the same transaction as its work, so a crash
 * leaves either both or neither. A duplicate that arrives while the first runs waits for its answer (or gets
 * 409 `idempotency_in_progress`); a later one gets the stored answer; the same key with another request, 422.
 */
export class IdempotencyService {
  readonly #sql: Sql;
  readonly #keys: IdempotencyRepository;
  readonly #opts: IdempotencyOptions;
  readonly #now: () => number;
  readonly #workerId: string;
  /** Requests running here, so a duplicate in this process wakes the moment the first one answers. */
  readonly #inflight = new Map<string, { done: Promise<void>; wake: () => void }>();

  constructor(sql: Sql, opts: IdempotencyOptions) {
    this.#sql = sql;
    this.#keys = new IdempotencyRepository(sql);
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#workerId = opts.workerId ?? makeWorkerId();
  }

  /**
   * Reserves `key` for this request, or throws the stored answer (IdempotentReplay), 422 for a key used with
   * another request, or 409 when the first request is still running after the wait.
   */
  async reserve(ownerId: string, key: string, requestHash: string): Promise<Reservation> {
    if (key.length > 255)
      throw unprocessable("invalid_idempotency_key", "Idempotency-Key is longer than 255 characters");
    const deadline = this.#now() + this.#opts.waitMs;
    for (;;) {
      const now = this.#now();
      const holder = this.#workerId;
      if (await this.#keys.reserve(ownerId, key, requestHash, holder, now, now + this.#opts.leaseMs)) {
        return this.#reservation(ownerId, key);
      }
      const row = await this.#keys.read(ownerId, key);
      if (!row) continue; // released between the insert and the read: try again
      if (row.request_hash !== requestHash) {
        throw unprocessable(
          "idempotency_key_reused",
          "this Idempotency-Key was used with a different request",
        );
      }
      if (row.status !== 0) throw new IdempotentReplay(row.status, JSON.parse(row.response));
      if (this.#abandoned(row, now)) {
        const lockedUntil = now + this.#opts.leaseMs;
        if (await this.#keys.takeOver(ownerId, key, requestHash, holder, row.locked_by, now, lockedUntil))
          return this.#reservation(ownerId, key);
        continue;
      }
      const left = deadline - this.#now();
      if (left <= 0) {
        const err = conflict(
          "idempotency_in_progress",
          "a request with this Idempotency-Key is still running; retry shortly",
        );
        throw new ApiError(err.status, err.code, err.message, { headers: { "retry-after": "1" } });
      }
      // Woken by the first request's answer in this process; polled when it runs in another one.
      const running = this.#inflight.get(slot(ownerId, key));
      await Promise.race([running?.done, Bun.sleep(Math.min(left, running ? 1_000 : 50))]);
    }
  }

  /**
   * Forgets up to `limit` answered keys older than `maxAgeMs` and reservations whose lease ran out long ago
   * (one slice of retention; the caller loops). Returns how many.
   */
  prune(maxAgeMs: number, limit: number): Promise<number> {
    return this.#keys.prune(this.#now() - maxAgeMs, this.#now(), limit);
  }

  #abandoned(row: KeyRow, now: number): boolean {
    if ((row.locked_until ?? 0) < now) return true;
    return row.locked_by !== null && isDeadLocalWorker(row.locked_by, this.#workerId);
  }

  #reservation(ownerId: string, key: string): Reservation {
    const id = slot(ownerId, key);
    const { promise: done, resolve: wake } = Promise.withResolvers<void>();
    this.#inflight.set(id, { done, wake });
    const holder = this.#workerId;
    const finish = () => {
      if (this.#inflight.get(id)?.done === done) this.#inflight.delete(id);
      wake();
    };
    /** Stores the answer if this request still holds the key; false when it was answered (or taken) already. */
    const store = (status: number, body: unknown) =>
      this.#keys.answer(ownerId, key, holder, status, JSON.stringify(body ?? null));
    return new Reservation({
      store,
      release: () => this.#keys.release(ownerId, key, holder),
      finish,
      tx: (fn) => this.#sql.transaction(fn),
    });
  }
}

type ReservationOps = {
  store: (status: number, body: unknown) => Promise<boolean>;
  release: () => Promise<void>;
  finish: () => void;
  tx: (fn: () => Promise<unknown>) => Promise<unknown>;
};

/**
 * One request's hold on its key. The route's work calls `answer(status).commit(body)` inside its transaction;
 * `settle` (after the handler) stores the answer in its own transaction unless the work already did, and `fail`
 * stores a client error as the answer or, for anything else, gives the key back so the request can be sent again.
 */
export class Reservation {
  readonly #ops: ReservationOps;

  constructor(ops: ReservationOps) {
    this.#ops = ops;
  }

  answer(status: number): IdempotentAnswer {
    return {
      commit: async (body, replayBody) => {
        // Inside the work's transaction: if the key was taken over meanwhile, the work must roll back.
        if (!(await this.#ops.store(status, replayBody !== undefined ? replayBody : body))) {
          throw conflict("idempotency_in_progress", "this request's Idempotency-Key was taken over; retry");
        }
      },
    };
  }

  /** After the handler returned. A no-op when the work's transaction stored the answer already. */
  async settle(status: number, body: unknown): Promise<void> {
    try {
      await this.#ops.tx(() => this.#ops.store(status, body));
    } finally {
      this.#ops.finish();
    }
  }

  async fail(err: unknown): Promise<void> {
    try {
      // Client errors are answers too: a repeat must get the same one, not a second attempt. Except 429: it
      // says "not now", so the repeat it asks for must be able to go through.
      if (
        err instanceof ApiError &&
        err.status < 500 &&
        err.status !== 429 &&
        !(err instanceof IdempotentReplay)
      ) {
        await this.#ops.tx(() => this.#ops.store(err.status, err.toBody()));
      } else {
        await this.#ops.release();
      }
    } catch {
      await this.#ops.release();
    } finally {
      this.#ops.finish();
    }
  }
}

const slot = (ownerId: string, key: string) => `${ownerId}\u0000${key}`;

/** The request a key stands for: method, path and body, with uploaded files by their bytes. */
export async function requestFingerprint(method: string, path: string, body: unknown): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const files: Blob[] = [];
  const text = JSON.stringify([method, path, body ?? null], (_k, v) => {
    if (v instanceof Blob) {
      files.push(v);
      return { file: files.length - 1, size: v.size, type: v.type };
    }
    return v;
  });
  hasher.update(text);
  for (const f of files) hasher.update(new Uint8Array(await f.arrayBuffer()));
  return hasher.digest("hex");
}
