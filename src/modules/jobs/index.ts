import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { authPlugin } from "../auth/plugin";
import { idempotent } from "../idempotency/service";
import { EnqueueBody, JobIdParams, ListJobsQuery } from "./model";

export const jobsModule = (ctx: AppContext) =>
  new Elysia({ prefix: "/api", name: "jobs" })
    .use(authPlugin(ctx.auth))
    .get("/jobs", ({ principal, query }) => ctx.jobs.list(principal, query), {
      auth: "token",
      query: ListJobsQuery,
      detail: { tags: ["jobs"], summary: "List your jobs (filters, cursor pagination)" },
    })
    .get("/jobs/stats", ({ principal }) => ctx.jobs.stats(principal), {
      auth: true,
      detail: {
        tags: ["jobs"],
        summary: "Job counts by status and by type (admins: all jobs; others: their own)",
      },
    })
    .get(
      "/jobs/health",
      async ({ set }) => {
        const report = await ctx.health.readiness();
        if (!report.ok) set.status = 503;
        return report;
      },
      { detail: { tags: ["ops"], summary: "Readiness of the job engine (same as /api/health)" } },
    )
    .get("/jobs/:id", ({ principal, params }) => ctx.jobs.detail(principal, params.id), {
      auth: "token",
      params: JobIdParams,
      detail: { tags: ["jobs"], summary: "A job with its items and error" },
    })
    .get("/jobs/:id/status", ({ principal, params }) => ctx.jobs.status(principal, params.id), {
      auth: "token",
      params: JobIdParams,
      detail: { tags: ["jobs"], summary: "Progress view of a job" },
    })
    .post(
      "/jobs/:id/cancel",
      ({ principal, params, headers, set }) =>
        idempotent(
          ctx.idempotency,
          {
            ownerId: principal.user.id,
            key: headers["idempotency-key"],
            request: ["cancel", params.id],
            set,
          },
          () => ({ status: 200, body: ctx.jobs.cancel(principal, params.id) }),
        ),
      {
        auth: true,
        params: JobIdParams,
        detail: { tags: ["jobs"], summary: "Cancel a queued or active job" },
      },
    )
    .post(
      "/jobs/:id/retry",
      ({ principal, params, headers, set }) =>
        idempotent(
          ctx.idempotency,
          { ownerId: principal.user.id, key: headers["idempotency-key"], request: ["retry", params.id], set },
          () => ({ status: 200, body: ctx.jobs.retry(principal, params.id) }),
        ),
      {
        auth: true,
        params: JobIdParams,
        detail: { tags: ["jobs"], summary: "Retry a failed, partial or cancelled job (failed items only)" },
      },
    )
    .post(
      "/jobs",
      ({ principal, body, headers, set }) =>
        idempotent(
          ctx.idempotency,
          { ownerId: principal.user.id, key: headers["idempotency-key"], request: body, set },
          () => ({ status: 202, body: ctx.jobs.enqueue(principal, body) }),
        ),
      {
        auth: ["admin"],
        body: EnqueueBody,
        detail: { tags: ["jobs"], summary: "Enqueue any registered job type (admin)" },
      },
    );
