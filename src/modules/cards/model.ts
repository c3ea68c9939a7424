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

/** A card as the API shows it; `stableImageUrl` always serves its latest image. */
export const CardView = z
  .object({
    id: z.string(),
    template: z.string(),
    data: z.record(z.string(), z.unknown()),
    version: z.number().int(),
    renderedVersion: z.number().int(),
    status: z.enum(["rendered", "rendering", "failed"]),
    imageUrl: z.string().nullable(),
    stableImageUrl: z.string(),
    renderError: z
      .object({ code: z.string(), message: z.string() })
      .nullable()
      .meta({ description: "Why the latest render failed (the last good image stays served)" }),
    ownerId: z.string(),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .meta({ title: "Card" });
export type CardView = z.infer<typeof CardView>;

export const CardList = z.object({ cards: z.array(CardView), nextCursor: z.string().nullable() });

/** `GET /api/cards/templates`: each template with its data's JSON Schema and example data. */
export const TemplateList = z.object({
  templates: z.array(
    z.object({
      name: z.string(),
      description: z.string(),
      width: z.number().int(),
      height: z.number().int(),
      schema: z.unknown().meta({ description: "JSON Schema of the template's data" }),
      example: z.unknown(),
    }),
  ),
});
