import { z } from "zod";

export const CheckResult = z.object({
  name: z.string(),
  ok: z.boolean(),
  ms: z.number(),
  error: z.string().optional(),
});
export type CheckResult = z.infer<typeof CheckResult>;

/** `GET /api/health`: readiness with each check's outcome (also the 503 answer's body). */
export const HealthReport = z
  .object({
    ok: z.boolean(),
    status: z.enum(["ok", "unavailable"]),
    checks: z.array(CheckResult),
    uptimeS: z.number().int(),
  })
  .meta({ title: "HealthReport" });
export type HealthReport = z.infer<typeof HealthReport>;

/** `GET /api/health/live`: the process answers. */
export const Liveness = z.object({ ok: z.boolean() });
