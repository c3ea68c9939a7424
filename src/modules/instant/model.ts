import { z } from "zod";
import { AssetView } from "../generate/model";
import { JobView } from "../jobs/model";

/** `POST /api/generate/instant`. */
export const InstantBody = z.strictObject({
  recipeId: z.string().min(1).max(64),
  /** Apps and admins: the end user who gets the image and pays for it (created on first use). */
  userId: z.string().min(1).max(128).optional(),
});
export type InstantBody = z.infer<typeof InstantBody>;

/** `POST /api/generate/instant`: the claimed image, paid for and now the caller's. */
export const InstantClaimView = z
  .object({
    recipeId: z.string(),
    variables: z
      .record(z.string(), z.union([z.string(), z.number()]))
      .meta({ description: "The variable values the image was made with" }),
    job: JobView,
    assets: z.array(AssetView),
    creditsRemaining: z.number().int().meta({ description: "The user's balance after the charge" }),
    claimedAt: z.number().int(),
  })
  .meta({ title: "InstantClaim" });
export type InstantClaimView = z.infer<typeof InstantClaimView>;
