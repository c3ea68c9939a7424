import type { CreditLedgerRow, Job, LEDGER_REASONS, User } from "../../db/schema";
import { allStatements, type Sql } from "../../db/sql";
import { ApiError, countOf } from "../../errors";
import type { Queue } from "../../queue";
import { refundOwed } from "./refunds";
import { CreditRepository } from "./repository";

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

/** A user's balance as a set-based charge reads it (`CreditService.accounts`). */
export type Account = { credits: number; unlimited: boolean };

/** What a debit did: the credits actually taken (0 for unlimited users or with credits off) and the balance. */
export type Debit = { charged: number; balance: number };

/** A ledger row as the API shows it (the row without its user id, which the caller already knows). */
export type LedgerEntry = Omit<CreditLedgerRow, "userId">;

function entryFrom(r: CreditLedgerRow): LedgerEntry {
  const { userId: _, ...entry } = r;
  return entry;
}

/**
 * Credits (DESIGN §2, §6). Every change of a balance is one `credit_ledger` row written in the same
 * transaction as the balance, carrying `balance_after`, so a user's credits always equal the sum of their
 * ledger deltas. Unlimited users are never charged; each would-be charge still gets a 0-delta row with a
 * note, so their usage is audited like everyone else's.
 */
export class CreditService {
  readonly #sql: Sql;
  readonly #ledger: CreditRepository;
  readonly #o: CreditOptions;
  readonly #now: () => number;
  /** The queue's own statements on a job's credit columns (the queue owns `jobs`). */
  readonly #jobs: Queue["features"];

  constructor(sql: Sql, queue: Pick<Queue, "features">, opts: CreditOptions) {
    this.#jobs = queue.features;
    this.#sql = sql;
    this.#ledger = new CreditRepository(sql);
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
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
  async debit(
    user: Pick<User, "id" | "unlimited">,
    amount: number,
    reason: "charge" | "instant" | "debit",
    ref: { jobId?: string | null; note?: string | null } = {},
  ): Promise<Debit> {
    if (!this.#o.enabled && reason !== "debit") return { charged: 0, balance: await this.balance(user.id) };
    return this.#sql.transaction(async () => {
      const now = this.#now();
      const balance = await this.#ledger.take(user.id, amount, now);
      if (balance !== null) {
        await this.#record(user.id, -amount, balance, reason, ref, now);
        return { charged: amount, balance };
      }
      const current = await this.#ledger.account(user.id);
      if (!current) throw new ApiError(404, "not_found", "user not found");
      if (!current.unlimited) throw new InsufficientCreditsError(amount, current.credits);
      const note = [`unlimited: ${amount} not charged`, ref.note].filter(Boolean).join("; ");
      await this.#record(user.id, 0, current.credits, reason, { ...ref, note }, now);
      return { charged: 0, balance: current.credits };
    });
  }

  /**
   * Locks these users' rows for the rest of the caller's transaction and reads their balances: the first
   * step of a set-based charge (`debitMany`), so a group can decide in memory which charges are affordable.
   */
  accounts(userIds: readonly string[]): Promise<Map<string, Account>> {
    return this.#ledger.lockAccounts(userIds);
  }

  /**
   * `debit` for many charges at once, in the caller's transaction, after `accounts` locked and read every
   * payer: the caller decided with those balances that each charge is affordable, in this order. One
   * statement moves the balances and one writes the ledger rows (unlimited users: 0-delta rows with a note, as
   * `debit` writes). A charge whose guard fails anyway (its row was not locked) throws, rolling the whole
   * transaction back. Resolves to each charge's Debit, in order.
   */
  async debitMany(
    charges: readonly { userId: string; amount: number; reason: "instant"; jobId: string }[],
    accounts: ReadonlyMap<string, Account>,
  ): Promise<Debit[]> {
    const account = (id: string) => {
      const a = accounts.get(id);
      if (!a) throw new ApiError(404, "not_found", "user not found");
      return a;
    };
    if (!this.#o.enabled) return charges.map((c) => ({ charged: 0, balance: account(c.userId).credits }));
    const now = this.#now();
    const totals = new Map<string, number>();
    for (const c of charges)
      if (!account(c.userId).unlimited) totals.set(c.userId, (totals.get(c.userId) ?? 0) + c.amount);
    // The balances and the ledger rows are computed here from the locked balances, so both statements go
    // out together; the balances the update returns are checked against the ledger's afterwards.
    const moved = this.#ledger.takeMany(totals, now);
    const running = new Map<string, number>();
    const rows: CreditLedgerRow[] = [];
    const debits = charges.map((c): Debit => {
      const { credits, unlimited } = account(c.userId);
      const before = running.get(c.userId) ?? credits;
      const charged = unlimited ? 0 : c.amount;
      const balance = before - charged;
      running.set(c.userId, balance);
      rows.push({
        id: Bun.randomUUIDv7(),
        userId: c.userId,
        delta: -charged,
        balanceAfter: balance,
        reason: c.reason,
        jobId: c.jobId,
        note: unlimited ? `unlimited: ${c.amount} not charged` : null,
        createdAt: now,
      });
      return { charged, balance };
    });
    const [after] = await allStatements([moved, this.#ledger.insertMany(rows)]);
    for (const [id, total] of totals) {
      if (after.get(id) !== running.get(id)) {
        throw new Error(`charging ${total} to ${id} failed: its balance changed while locked`);
      }
    }
    for (const r of rows) this.#o.onLedger?.(r.reason, r.delta);
    return debits;
  }

  /** Adds credits (reason `grant` or `refund`) with their ledger row. Resolves to the new balance. */
  credit(
    userId: string,
    amount: number,
    reason: "grant" | "refund",
    ref: { jobId?: string | null; note?: string | null } = {},
  ): Promise<number> {
    return this.#sql.transaction(async () => {
      const now = this.#now();
      const balance = await this.#ledger.give(userId, amount, now);
      if (balance === null) throw new ApiError(404, "not_found", "user not found");
      await this.#record(userId, amount, balance, reason, ref, now);
      return balance;
    });
  }

  /** Whether a job that ended like this may be owed a refund (the terminal hook's cheap look at the row). */
  refundApplies(job: Job): boolean {
    return job.creditsCharged > 0 && job.ownerId !== null && job.status !== "completed";
  }

  /**
   * Terminal hook (runs inside the job's terminal-state transaction): refunds what the job's failures are owed
   * (see refundOwed) minus what was already refunded, so a job is never refunded twice nor beyond its charge.
   */
  async onJobTerminal(job: Job): Promise<void> {
    if (!this.refundApplies(job)) return;
    const row = await this.#jobs.credits(job.id);
    if (!row) return;
    const owed = refundOwed({ ...job, creditsCharged: row.charged }, await this.#jobs.items(job.id));
    const delta = owed - row.refunded;
    if (delta <= 0) return;
    if (!(await this.#jobs.addRefund(job.id, delta))) return;
    await this.credit(job.ownerId!, delta, "refund", {
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
  async onJobRetry(job: Job): Promise<void> {
    if (job.creditsRefunded <= 0 || !job.ownerId) return;
    const owner = await this.#ledger.account(job.ownerId);
    if (!owner) return;
    const { charged } = await this.debit(
      { id: job.ownerId, unlimited: owner.unlimited },
      job.creditsRefunded,
      "charge",
      { jobId: job.id, note: "retry: re-charging the refund" },
    );
    if (charged > 0) await this.#jobs.takeBackRefund(job.id, charged);
  }

  async balance(userId: string): Promise<number> {
    return (await this.#ledger.account(userId))?.credits ?? 0;
  }

  /** A user's ledger, newest first, `limit` per page; `cursor` is the last id of the previous page. */
  async ledger(
    userId: string,
    opts: { limit: number; cursor?: string },
  ): Promise<{ entries: LedgerEntry[]; nextCursor: string | null }> {
    const rows = await this.#ledger.page(userId, opts.cursor ?? null, opts.limit + 1);
    const entries = rows.slice(0, opts.limit).map(entryFrom);
    return { entries, nextCursor: rows.length > opts.limit ? (entries.at(-1)?.id ?? null) : null };
  }

  async #record(
    userId: string,
    delta: number,
    balanceAfter: number,
    reason: LedgerReason,
    ref: { jobId?: string | null; note?: string | null },
    now: number,
  ): Promise<void> {
    await this.#ledger.insert({
      id: Bun.randomUUIDv7(),
      userId,
      delta,
      balanceAfter,
      reason,
      jobId: ref.jobId ?? null,
      note: ref.note ?? null,
      createdAt: now,
    });
    this.#o.onLedger?.(reason, delta);
  }
}
