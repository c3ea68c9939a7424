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

/** A registered endpoint; `failing` after WEBHOOK_FAILING_AFTER_MS of failures, `disabled` when turned off. */
export const EndpointView = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(z.string()),
    status: z.enum(["active", "failing", "disabled"]),
    failureCount: z.number().int(),
    failingSince: z.number().int().nullable(),
    disabledReason: z.string().nullable(),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .meta({ title: "WebhookEndpoint" });
export type EndpointView = z.infer<typeof EndpointView>;

/** `POST /api/webhooks`: the endpoint with its signing secret, shown this once. */
export const NewEndpointView = EndpointView.extend({
  secret: z
    .string()
    .meta({ description: "Signs this endpoint's deliveries (Standard Webhooks); shown once" }),
}).meta({ title: "NewWebhookEndpoint" });

export const EndpointList = z.object({ endpoints: z.array(EndpointView) });

/** One event sent (or to be sent) to one URL, with its latest attempt. */
export const DeliveryView = z
  .object({
    id: z.string(),
    endpointId: z.string().nullable().meta({ description: "Null for a job's own webhookUrl" }),
    jobId: z.string().nullable(),
    url: z.string(),
    eventType: z.string(),
    status: z.enum(DELIVERY_STATUSES),
    attempts: z.number().int(),
    nextAttemptAt: z.number().int().nullable(),
    lastAttemptAt: z.number().int().nullable(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    lastDurationMs: z.number().nullable(),
    createdAt: z.number().int(),
    deliveredAt: z.number().int().nullable(),
  })
  .meta({ title: "WebhookDelivery" });
export type DeliveryView = z.infer<typeof DeliveryView>;

export const DeliveryList = z.object({
  deliveries: z.array(DeliveryView),
  nextCursor: z.string().nullable(),
});

/** The secret that signs an account's per-job `webhookUrl` deliveries. */
export const OwnerSecretView = z.object({ secret: z.string(), rotatedAt: z.number().int().nullable() });

/** `POST /api/webhooks/:id/test`: the queued delivery, to follow in the endpoint's deliveries. */
export const TestDeliveryView = z.object({ deliveryId: z.string() });
