import { z } from "zod";
import { LEDGER_REASONS } from "../../db/schema";

export const CreditsQuery = z.object({
  /** Admins and apps: an end user's balance (their external id or internal id). */
  userId: z.string().min(1).max(128).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  /** Opaque cursor from the previous page's `nextCursor`. */
  cursor: z.string().max(64).optional(),
});
export type CreditsQuery = z.infer<typeof CreditsQuery>;

export const UserIdParams = z.object({ id: z.string().min(1).max(128) });

/** `POST /api/users/:id/credits`: a grant adds credits, a debit takes them (never below zero). */
export const AdjustCreditsBody = z.strictObject({
  amount: z.number().int().min(1).max(1_000_000_000),
  reason: z.enum(["grant", "debit"]).default("grant"),
  /** Why, for the ledger (an order id, "welcome bonus", …). */
  note: z.string().trim().min(1).max(500).optional(),
});
export type AdjustCreditsBody = z.infer<typeof AdjustCreditsBody>;

/** One change of a balance, with the balance after it. */
export const LedgerEntryView = z.object({
  id: z.string(),
  delta: z.number().int(),
  balanceAfter: z.number().int(),
  reason: z.enum(LEDGER_REASONS),
  jobId: z.string().nullable(),
  note: z.string().nullable(),
  createdAt: z.number().int(),
});

/** `GET /api/credits`: a balance and a page of its ledger, newest first. */
export const CreditsView = z
  .object({
    userId: z.string(),
    credits: z.number().int(),
    unlimited: z.boolean(),
    creditsEnabled: z.boolean().meta({ description: "CREDITS_ENABLED: false when nothing is charged" }),
    ledger: z.array(LedgerEntryView),
    nextCursor: z.string().nullable(),
  })
  .meta({ title: "Credits" });

/** `POST /api/users/:id/credits`: the balance after the change and the ledger row it wrote. */
export const CreditsAdjustedView = z.object({
  userId: z.string(),
  credits: z.number().int(),
  ledger: z.array(LedgerEntryView),
});
