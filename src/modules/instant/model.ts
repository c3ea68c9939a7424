import { z } from "zod";

/** `POST /api/generate/instant`. */
export const InstantBody = z.strictObject({
  recipeId: z.string().min(1).max(64),
  /** Apps and admins: the end user who gets the image and pays for it (created on first use). */
  userId: z.string().min(1).max(128).optional(),
});
export type InstantBody = z.infer<typeof InstantBody>;
