import { z } from "zod";

export const TokenBody = z.strictObject({
  /** The end user the token is for (apps: their external id). Omit for a token of the caller itself. */
  userId: z.string().min(1).max(128).optional(),
  ttlSeconds: z
    .number()
    .int()
    .min(10)
    .max(7 * 24 * 3600)
    .optional(),
});
