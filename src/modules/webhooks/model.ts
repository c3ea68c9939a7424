import { z } from "zod";
import { DELIVERY_STATUSES } from "../../db/schema";

/** Events a receiver can get; `*` in an endpoint's filter means all of them. */
export const WEBHOOK_EVENTS = [
  "job.started",
  "job.progress",
  "job.completed",
  "job.partial",
  "job.failed",
  "job.cancelled",
  "card.rendered",
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** Sent only by `POST /api/webhooks/:id/test`, whatever the endpoint's filter. */
export const TEST_EVENT = "webhook.test";

export const CreateEndpointBody = z.strictObject({
  url: z.string().min(1).max(2048),
  /** Event types to receive. @defaultValue ["*"] (all) */
  events: z
    .array(z.enum([...WEBHOOK_EVENTS, "*"]))
    .min(1)
    .max(WEBHOOK_EVENTS.length + 1)
    .optional(),
});
export type CreateEndpointBody = z.infer<typeof CreateEndpointBody>;

export const EndpointIdParams = z.object({ id: z.string().min(1).max(64) });

export const DeliveriesQuery = z.object({
  status: z.enum(DELIVERY_STATUSES).optional(),
  jobId: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  /** Opaque cursor from the previous page's `nextCursor`. */
  cursor: z.string().max(64).optional(),
});
export type DeliveriesQuery = z.infer<typeof DeliveriesQuery>;
