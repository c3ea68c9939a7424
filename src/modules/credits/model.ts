import { z } from "zod";

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
