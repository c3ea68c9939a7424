/**
 * What the routes themselves cannot say about an operation: its success status and shape, the errors
 * particular to it, and request examples. Keyed by `METHOD /elysia/path`. Anything missing here is still
 * documented from the route (schemas, auth, the common errors); this only adds detail.
 */
import type { z } from "zod";
import { poll } from "../../render/templates/poll";
import { KeyList, KeyView, NewKeyView } from "../auth/model";
import {
  CardList,
  CardView,
  HealthReport,
  InstantClaimView,
  JobList,
  JobStats,
  JobStatusView,
  JobView,
  TokenView,
} from "./schemas";

export type OperationDoc = {
  /** For routes that give none in their `detail`. */
  summary?: string;
  /** Success status. @defaultValue 200 */
  status?: number;
  response?: z.ZodType;
  /** A response that is not JSON, e.g. `image/png`. */
  responseType?: string;
  responseDescription?: string;
  responseExample?: unknown;
  requestExample?: unknown;
  /** Errors particular to this operation (the common ones are added for every route). */
  errors?: Record<number, string>;
  /** No credentials needed. */
  public?: boolean;
  /** Client tokens (JWTs from POST /api/tokens) are accepted as well as API keys. */
  clientToken?: boolean;
  /** A client token may come as `?token=` (routes a browser opens without headers; never an API key). */
  queryToken?: boolean;
  bodyType?: "application/json" | "multipart/form-data" | "application/x-www-form-urlencoded";
};

const INSUFFICIENT_CREDITS = "not enough credits (`insufficient_credits`, with `required` and `available`)";

const JOB_ID = "0197a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";

export const OPERATIONS: Record<string, OperationDoc> = {
  "GET /api/health": {
    public: true,
    response: HealthReport,
    errors: { 503: "a readiness check failed (the body names it)" },
  },
  "GET /api/health/live": { public: true, responseExample: { ok: true } },
  "GET /api/jobs/health": {
    public: true,
    response: HealthReport,
    errors: { 503: "a readiness check failed (the body names it)" },
  },
  "GET /api/cards/templates": { public: true },
  "GET /api/cards/:id/image": {
    public: true,
    responseType: "image/png",
    responseDescription:
      "The latest PNG (a placeholder while the first render is pending); 304 on If-None-Match",
  },
  "POST /api/tokens": {
    status: 201,
    response: TokenView,
    requestExample: { userId: "user-42", ttlSeconds: 900 },
  },
  "GET /api/profile": { clientToken: true },
  "GET /api/keys": { response: KeyList, errors: { 404: "no such user, or not one the caller may name" } },
  "POST /api/keys": {
    status: 201,
    response: NewKeyView,
    requestExample: { name: "production", expiresInSeconds: 90 * 86_400 },
    errors: {
      404: "no such user",
      422: "invalid fields, or the reserved name `ADMIN_KEY` (`reserved_name`)",
    },
  },
  "DELETE /api/keys/:id": { response: KeyView },
  "POST /api/keys/:id/rotate": {
    status: 201,
    response: NewKeyView,
    requestExample: { expiresInSeconds: 90 * 86_400 },
    errors: {
      409: "the key is revoked (`key_revoked`), or it is the ADMIN_KEY variable's (`managed_key`)",
    },
  },
  "POST /api/users": {
    status: 201,
    requestExample: { name: "Poll app", role: "app", createKey: true },
    errors: { 409: "a user with this externalId already exists" },
  },
  "GET /api/jobs": { clientToken: true, response: JobList },
  "GET /api/jobs/stats": { response: JobStats },
  "GET /api/jobs/:id": { clientToken: true, response: JobView },
  "GET /api/jobs/:id/status": {
    clientToken: true,
    response: JobStatusView,
    responseExample: {
      jobId: JOB_ID,
      type: "generate",
      status: "active",
      progress: 40,
      message: "2/5 items",
      completedItems: 2,
      totalItems: 5,
      attempts: 1,
      error: null,
      result: null,
      createdAt: 1767225600000,
      updatedAt: 1767225604000,
    },
  },
  "GET /api/jobs/:id/events": {
    clientToken: true,
    queryToken: true,
    responseType: "text/event-stream",
    responseDescription: "Server-Sent Events: job_progress, then one terminal event, then the stream ends",
  },
  "POST /api/jobs/:id/cancel": {
    response: JobView,
    errors: { 409: "the job has already finished (`not_cancellable`)" },
  },
  "POST /api/jobs/:id/retry": {
    response: JobView,
    errors: {
      409: "the job is not failed, partial or cancelled (`not_retryable`), or a newer one holds its dedupe key",
    },
  },
  "POST /api/jobs": {
    status: 202,
    response: JobView,
    requestExample: { type: "card.render", input: { cardId: JOB_ID }, priority: 5 },
  },
  "POST /api/jobs/generate-image": {
    status: 202,
    requestExample: {
      prompt: "a watercolour fox in a snowy forest",
      size: "1024x1024",
      output: "square-1080",
      userId: "user-42",
    },
    responseExample: {
      jobId: JOB_ID,
      status: "queued",
      message: "Image generation queued",
      statusUrl: `/api/jobs/${JOB_ID}/status`,
      websocketSubscription: JSON.stringify({ type: "subscribe_to_job", jobId: JOB_ID }),
      totalItems: 1,
    },
    errors: { 402: INSUFFICIENT_CREDITS },
  },
  "POST /api/jobs/generate-image/upload": {
    status: 202,
    bodyType: "multipart/form-data",
    requestExample: {
      prompt: "make the sky stormy",
      image: "(the PNG, JPEG or WebP file)",
      output: "original",
    },
    errors: { 402: INSUFFICIENT_CREDITS },
  },
  "POST /api/generate/instant": {
    response: InstantClaimView,
    requestExample: { recipeId: "fox-avatar", userId: "user-42" },
    errors: {
      402: INSUFFICIENT_CREDITS,
      404: "no ready generation for this recipe (`no_instant_available`, `fallbackToModal: true`)",
      409: "the last ready generation was just claimed (`instant_taken`, `fallbackToModal: true`)",
      429: "too many instant claims (`Retry-After`)",
    },
  },
  "GET /api/providers": { clientToken: true },
  "POST /api/cards/preview": {
    responseType: "image/png",
    responseDescription: "The rendered PNG",
    requestExample: { template: "poll", data: poll.example },
    errors: { 429: "preview rate limit reached (`rate_limited`, `details.retryAfterMs`)" },
  },
  "POST /api/cards": {
    status: 201,
    response: CardView,
    requestExample: { template: "poll", data: poll.example, userId: "user-42" },
  },
  "GET /api/cards": { clientToken: true, response: CardList },
  "GET /api/cards/:id": { clientToken: true, response: CardView },
  "PATCH /api/cards/:id": {
    response: CardView,
    requestExample: { data: { options: poll.example.options.map((o) => ({ ...o, votes: o.votes + 1 })) } },
  },
  "DELETE /api/cards/:id": { status: 204 },
  "POST /api/webhooks": {
    status: 201,
    requestExample: { url: "https://example.com/hooks/easel", events: ["job.completed", "job.failed"] },
  },
  "DELETE /api/webhooks/:id": { status: 204 },
  "GET /files/*": {
    summary: "A stored file (local storage; S3 objects have their own URLs)",
    public: true,
    responseType: "application/octet-stream",
    responseDescription:
      "The stored file with its own Content-Type, ETag and Cache-Control; 304 when unchanged",
  },
  "HEAD /files/*": {
    summary: "A stored file's headers",
    public: true,
    responseType: "application/octet-stream",
    responseDescription: "The stored file's headers",
  },
  "POST /api/webhooks/:id/test": { status: 202 },
  "POST /api/recipes": {
    status: 201,
    requestExample: {
      id: "fox-avatar",
      name: "Fox avatar",
      promptTemplate: "a {{style}} portrait of a fox wearing a {{hat}}",
      variables: [
        {
          name: "style",
          type: "enum",
          options: [{ value: "watercolour", weight: 3 }, { value: "pixel art" }],
        },
        { name: "hat", type: "string", default: "beret", max: 40 },
      ],
      output: "square-1080",
      creditCost: 2,
      backlogMin: 5,
    },
  },
  "PATCH /api/recipes/:id": { requestExample: { backlogMin: 10, active: true } },
  "POST /api/users/:id/credits": {
    requestExample: { amount: 50, reason: "grant", note: "order 1234" },
    errors: { 402: "a debit larger than the balance (`insufficient_credits`)" },
  },
  ...pageOperations(),
};

/** HTML pages (dashboard, docs): dashboard forms post urlencoded and answer with a 303 redirect. */
function pageOperations(): Record<string, OperationDoc> {
  const page: OperationDoc = {
    responseType: "text/html",
    responseDescription: "The page (303 to sign-in without a session)",
  };
  const form = (description: string, errors: Record<number, string> = {}): OperationDoc => ({
    status: 303,
    bodyType: "application/x-www-form-urlencoded",
    responseDescription: description,
    errors: {
      401: "no dashboard session",
      403: "cross-site request or missing/invalid CSRF token",
      ...errors,
    },
  });
  return {
    "GET /dashboard/login": { ...page, responseDescription: "The sign-in form" },
    "POST /dashboard/login": {
      status: 303,
      bodyType: "application/x-www-form-urlencoded",
      responseDescription: "Signed in: sets the httpOnly session cookie and redirects to /dashboard",
      errors: {
        401: "unknown or revoked key (the form again, with a message)",
        403: "not an admin or app key, or a cross-site post",
      },
    },
    "POST /dashboard/logout": form("Signed out: clears the cookie and redirects to the sign-in page"),
    "GET /dashboard": page,
    "GET /dashboard/jobs": page,
    "GET /dashboard/jobs/:id": page,
    "POST /dashboard/jobs/:id/retry": form("Back to the job page with a notice"),
    "POST /dashboard/jobs/:id/cancel": form("Back to the job page with a notice"),
    "GET /dashboard/backlog": page,
    "POST /dashboard/backlog/:id/top-up": form("Back to the backlog page with a notice"),
    "GET /dashboard/cards": page,
    "GET /dashboard/webhooks": page,
    "GET /dashboard/keys": page,
    "POST /dashboard/keys": {
      ...form("The keys page, showing the new key once"),
      status: 200,
      responseType: "text/html",
    },
    "POST /dashboard/keys/:id/revoke": form(
      "Back to the keys page with a notice (to sign-in when it was the session's own key)",
    ),
    "POST /dashboard/keys/:id/rotate": {
      ...form("The keys page, showing the new key once"),
      status: 200,
      responseType: "text/html",
    },
    "GET /dashboard/fragments/:name": { responseType: "text/html", responseDescription: "An HTML fragment" },
    "GET /dashboard/fragments/job/:id": {
      responseType: "text/html",
      responseDescription: "An HTML fragment",
    },
    "GET /dashboard/assets/:file": {
      public: true,
      responseType: "text/plain",
      responseDescription: "JavaScript or CSS",
    },
    "GET /docs": { public: true, responseType: "text/html", responseDescription: "Swagger UI" },
    "GET /docs/json": { public: true, responseDescription: "An OpenAPI 3.1 document" },
    "GET /docs/assets/:file": {
      public: true,
      responseType: "text/plain",
      responseDescription: "Swagger UI's files",
    },
  };
}
