import type { Database, Statement } from "bun:sqlite";
import { rowMapper } from "../../db/rows";
import {
  type CreditLedgerRow,
  creditLedger,
  type Job,
  type LEDGER_REASONS,
  type User,
} from "../../db/schema";
import { transaction } from "../../db/tx";
import { ApiError, countOf } from "../../errors";
import type { Queue } from "../../queue";
import { refundOwed } from "./refunds";

export type LedgerReason = (typeof LEDGER_REASONS)[number];

export type CreditOptions = {
  /** CREDITS_ENABLED: when false nothing is charged and no charge rows are written. */
  enabled: boolean;
  /** CREDITS_PER_IMAGE: the price of one image of a free-prompt generation. */
  perImage: number;
  /** PROVIDER_CREDIT_COSTS: per-provider overrides of `perImage`. */
  providerCosts?: Record<string, number>;
  now?: () => number;
  /** Told of every ledger row written (metrics). */
  onLedger?: (reason: LedgerReason, delta: number) => void;
};

/** 402 with `required` and `available` both inside `error` (what clients read) and in `details`. */
export class InsufficientCreditsError extends ApiError {
  override name = "InsufficientCreditsError";
  readonly required: number;
  readonly available: number;

  constructor(required: number, available: number) {
    super(402, "insufficient_credits", `this needs ${countOf(required, "credit")}; ${available} available`, {
      details: { required, available },
    });
    this.required = required;
    this.available = available;
  }

  override toBody(): Record<string, unknown> {
    const body = super.toBody();
    return {
      ...body,
      error: { ...(body.error as object), required: this.required, available: this.available },
    };
  }
}

/** What a debit did: the credits actually taken (0 for unlimited users or with credits off) and the balance. */
export type Debit = { charged: number; balance: number };

/** A ledger row as the API shows it (the row without its user id, which the caller already knows). */
export type LedgerEntry = Omit<CreditLedgerRow, "userId">;

type Raw = Record<string, unknown>;

const toLedgerRow = rowMapper(creditLedger);

function entryFrom(r: Raw): LedgerEntry {
  const { userId: _, ...entry } = toLedgerRow(r);
  return entry;
}

/**
 * Credits (DESIGN §2, §6). Every change of a balance is one `credit_ledger` row written in the same
 * transaction as the balance, carrying `balance_after`, so a user's credits always equal the sum of their
 * ledger deltas. Unlimited users are never charged; each would-be charge still gets a 0-delta row with a
 * note, so their usage is audited like everyone else's.
 */
export class CreditService {
  readonly #db: Database;
  readonly #o: CreditOptions;
  readonly #now: () => number;
  readonly #take: Statement;
  readonly #give: Statement;
  readonly #user: Statement;
  readonly #insert: Statement;
  /** The queue's own statements on a job's credit columns (the queue owns `jobs`). */
  readonly #jobs: Queue["features"];

  constructor(db: Database, queue: Pick<Queue, "features">, opts: CreditOptions) {
    this.#jobs = queue.features;
    this.#db = db;
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    // The balance check and the debit are one statement: two concurrent charges can never both pass it.
    this.#take = db.prepare(
      `UPDATE users SET credits = credits - ?1, updated_at = ?2
       WHERE id = ?3 AND unlimited = 0 AND credits >= ?1 RETURNING credits`,
    );
    this.#give = db.prepare(
      "UPDATE users SET credits = credits + ?1, updated_at = ?2 WHERE id = ?3 RETURNING credits",
    );
    this.#user = db.prepare("SELECT credits, unlimited FROM users WHERE id = ?");
    this.#insert = db.prepare(
      `INSERT INTO credit_ledger (id, user_id, delta, balance_after, reason, job_id, note, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  get enabled(): boolean {
    return this.#o.enabled;
  }

  /** Credits for `images` images of a free-prompt generation on `provider`. */
  imageCost(provider: string, images: number): number {
    return (this.#o.providerCosts?.[provider] ?? this.#o.perImage) * images;
  }

  /** What `user` actually pays for something costing `cost`: nothing when credits are off or they are unlimited. */
  priceFor(user: Pick<User, "unlimited">, cost: number): number {
    return this.#o.enabled && !user.unlimited ? cost : 0;
  }

  /**
   * Takes `amount` from the user (reason `charge`, `instant` or `debit`) with its ledger row, in the caller's
   * transaction when one is open. Unlimited users get a 0-delta row noting the amount; with credits off nothing
   * is written. Throws InsufficientCreditsError (402) when the balance is too low, changing nothing.
   */
  debit(
    user: Pick<User, "id" | "unlimited">,
    amount: number,
    reason: "charge" | "instant" | "debit",
    ref: { jobId?: string | null; note?: string | null } = {},
  ): Debit {
    if (!this.#o.enabled && reason !== "debit") return { charged: 0, balance: this.balance(user.id) };
    return transaction(this.#db, () => {
      const now = this.#now();
      const row = this.#take.get(amount, now, user.id) as { credits: number } | null;
      if (row) {
        this.#record(user.id, -amount, row.credits, reason, ref, now);
        return { charged: amount, balance: row.credits };
      }
      const current = this.#user.get(user.id) as { credits: number; unlimited: number } | null;
      if (!current) throw new ApiError(404, "not_found", "user not found");
      if (!current.unlimited) throw new InsufficientCreditsError(amount, current.credits);
      const note = [`unlimited: ${amount} not charged`, ref.note].filter(Boolean).join("; ");
      this.#record(user.id, 0, current.credits, reason, { ...ref, note }, now);
      return { charged: 0, balance: current.credits };
    });
  }

  /** Adds credits (reason `grant` or `refund`) with their ledger row. Returns the new balance. */
  credit(
    userId: string,
    amount: number,
    reason: "grant" | "refund",
    ref: { jobId?: string | null; note?: string | null } = {},
  ): number {
    return transaction(this.#db, () => {
      const now = this.#now();
      const row = this.#give.get(amount, now, userId) as { credits: number } | null;
      if (!row) throw new ApiError(404, "not_found", "user not found");
      this.#record(userId, amount, row.credits, reason, ref, now);
      return row.credits;
    });
  }

  /**
   * Terminal hook (runs inside the job's terminal-state transaction): refunds what the job's failures are owed
   * (see refundOwed) minus what was already refunded, so a job is never refunded twice nor beyond its charge.
   */
  onJobTerminal(job: Job): void {
    if (job.creditsCharged <= 0 || !job.ownerId || job.status === "completed") return;
    const row = this.#jobs.credits(job.id);
    if (!row) return;
    const owed = refundOwed({ ...job, creditsCharged: row.charged }, this.#jobs.items(job.id));
    const delta = owed - row.refunded;
    if (delta <= 0) return;
    if (!this.#jobs.addRefund(job.id, delta)) return;
    this.credit(job.ownerId, delta, "refund", {
      jobId: job.id,
      note: `${job.status}: ${job.error?.code ?? "items failed"}`,
    });
    job.creditsRefunded = row.refunded + delta;
  }

  /**
   * Retry hook (inside the retry's transaction): what was refunded is charged again, since the retry runs it
   * again; the job's refunded total goes down by what was actually taken. Too few credits → 402 and the retry
   * rolls back. A later failure is refunded anew by `onJobTerminal`.
   */
  onJobRetry(job: Job): void {
    if (job.creditsRefunded <= 0 || !job.ownerId) return;
    const owner = this.#user.get(job.ownerId) as { unlimited: number } | null;
    if (!owner) return;
    const { charged } = this.debit(
      { id: job.ownerId, unlimited: owner.unlimited === 1 },
      job.creditsRefunded,
      "charge",
      { jobId: job.id, note: "retry: re-charging the refund" },
    );
    if (charged > 0) this.#jobs.takeBackRefund(job.id, charged);
  }

  balance(userId: string): number {
    return (this.#user.get(userId) as { credits: number } | null)?.credits ?? 0;
  }

  /** A user's ledger, newest first, `limit` per page; `cursor` is the last id of the previous page. */
  ledger(
    userId: string,
    opts: { limit: number; cursor?: string },
  ): { entries: LedgerEntry[]; nextCursor: string | null } {
    const rows = this.#db
      .query(
        `SELECT * FROM credit_ledger WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3`,
      )
      .all(userId, opts.cursor ?? null, opts.limit + 1) as Raw[];
    const entries = rows.slice(0, opts.limit).map(entryFrom);
    return { entries, nextCursor: rows.length > opts.limit ? (entries.at(-1)?.id ?? null) : null };
  }

  #record(
    userId: string,
    delta: number,
    balanceAfter: number,
    reason: LedgerReason,
    ref: { jobId?: string | null; note?: string | null },
    now: number,
  ): void {
    this.#insert.run(
      Bun.randomUUIDv7(),
      userId,
      delta,
      balanceAfter,
      reason,
      ref.jobId ?? null,
      ref.note ?? null,
      now,
    );
    this.#o.onLedger?.(reason, delta);
  }
}
