import { Elysia } from "elysia";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { routeDoc } from "../docs/model";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { HealthReport } from "../ops/model";
import type { HealthService } from "../ops/service";
import { EnqueueBody, JobIdParams, JobList, JobStats, JobStatusView, JobView, ListJobsQuery } from "./model";
import type { JobService } from "./service";

const JOB_ID = "0197a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";

/** What this file needs from the services, and nothing more. */
type Deps = {
  auth: AuthService;
  health: HealthService;
  idempotency: IdempotencyService;
  jobs: JobService;
};

export const jobsModule = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "jobs" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .get("/jobs", ({ principal, query }) => ctx.jobs.list(principal, query), {
      auth: "token",
      query: ListJobsQuery,
      response: { 200: JobList },
      detail: { tags: ["jobs"], summary: "List your jobs (filters, cursor pagination)" },
    })
    .get("/jobs/stats", ({ principal }) => ctx.jobs.stats(principal), {
      auth: true,
      response: { 200: JobStats },
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
      {
        response: { 200: HealthReport, 503: HealthReport },
        detail: routeDoc({
          tags: ["ops"],
          summary: "Readiness of the job engine (same as /api/health)",
          errors: { 503: "a readiness check failed (the body names it)" },
        }),
      },
    )
    .get("/jobs/:id", ({ principal, params }) => ctx.jobs.detail(principal, params.id), {
      auth: "token",
      params: JobIdParams,
      response: { 200: JobView },
      detail: { tags: ["jobs"], summary: "A job with its items and error" },
    })
    .get("/jobs/:id/status", ({ principal, params }) => ctx.jobs.status(principal, params.id), {
      auth: "token",
      params: JobIdParams,
      response: { 200: JobStatusView },
      detail: routeDoc({
        tags: ["jobs"],
        summary: "Progress view of a job",
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
      }),
    })
    .post("/jobs/:id/cancel", ({ principal, params, idem }) => ctx.jobs.cancel(principal, params.id, idem), {
      auth: true,
      idempotent: 200,
      params: JobIdParams,
      response: { 200: JobView },
      detail: routeDoc({
        tags: ["jobs"],
        summary: "Cancel a queued or active job",
        errors: { 409: "the job has already finished (`not_cancellable`)" },
      }),
    })
    .post("/jobs/:id/retry", ({ principal, params, idem }) => ctx.jobs.retry(principal, params.id, idem), {
      auth: true,
      idempotent: 200,
      params: JobIdParams,
      response: { 200: JobView },
      detail: routeDoc({
        tags: ["jobs"],
        summary:
          "Retry a failed, partial or cancelled job (failed items only); what was refunded is charged again",
        errors: {
          409: "the job is not failed, partial or cancelled (`not_retryable`), or a newer one holds its dedupe key",
        },
      }),
    })
    .post("/jobs", ({ principal, body, idem }) => ctx.jobs.enqueue(principal, body, idem), {
      auth: ["admin"],
      idempotent: 202,
      body: EnqueueBody,
      response: { 202: JobView },
      detail: routeDoc({
        tags: ["jobs"],
        summary: "Enqueue any registered job type (admin)",
        requestExample: { type: "card.render", input: { cardId: JOB_ID }, priority: 5 },
      }),
    });
