import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { authPlugin } from "../auth/plugin";
import { idempotencyPlugin } from "../idempotency/plugin";
import { EnqueueBody, JobIdParams, ListJobsQuery } from "./model";

export const jobsModule = (ctx: AppContext) =>
  new Elysia({ prefix: "/api", name: "jobs" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
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
    .post("/jobs/:id/cancel", ({ principal, params, idem }) => ctx.jobs.cancel(principal, params.id, idem), {
      auth: true,
      idempotent: 200,
      params: JobIdParams,
      detail: { tags: ["jobs"], summary: "Cancel a queued or active job" },
    })
    .post("/jobs/:id/retry", ({ principal, params, idem }) => ctx.jobs.retry(principal, params.id, idem), {
      auth: true,
      idempotent: 200,
      params: JobIdParams,
      detail: {
        tags: ["jobs"],
        summary:
          "Retry a failed, partial or cancelled job (failed items only); what was refunded is charged again",
      },
    })
    .post("/jobs", ({ principal, body, idem }) => ctx.jobs.enqueue(principal, body, idem), {
      auth: ["admin"],
      idempotent: 202,
      body: EnqueueBody,
      detail: { tags: ["jobs"], summary: "Enqueue any registered job type (admin)" },
    });
