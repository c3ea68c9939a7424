import { z } from "zod";

export const CardIdParams = z.object({ id: z.string().min(1).max(64) });

export const CreateCardBody = z.strictObject({
  template: z.string().min(1).max(64),
  data: z.record(z.string(), z.unknown()),
  /** Apps and admins: the end user who owns the card. */
  userId: z.string().min(1).max(128).optional(),
});
export type CreateCardBody = z.infer<typeof CreateCardBody>;

export const PatchCardBody = z.strictObject({
  /** A JSON merge patch (RFC 7386) of the card's data: objects merge, arrays replace, null deletes. */
  data: z.record(z.string(), z.unknown()),
});

export const PreviewBody = z.strictObject({
  template: z.string().min(1).max(64),
  data: z.record(z.string(), z.unknown()),
});

export const ListCardsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(64).optional(),
  template: z.string().max(64).optional(),
});
export type ListCardsQuery = z.infer<typeof ListCardsQuery>;

export const RenderCardInput = z.object({ cardId: z.string() });
export const CleanupCardInput = z.object({
  cardId: z.string(),
  /** Images of versions below this go; absent (jobs queued by older releases): below the version shown. */
  beforeVersion: z.number().int().optional(),
});
