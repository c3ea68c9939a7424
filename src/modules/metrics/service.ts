/**
 * Prometheus metrics (prom-client), served by GET /metrics (./index.ts). One `Metrics` per process, in
 * AppContext as `ctx.metrics`.
 *
 * For other modules to record with (cheap; call them at any rate):
 * - `observeRender(ms)`: one card render's duration (runtime.ts's render pool calls it);
 * - `credits(reason, delta)`: one credit-ledger row (CreditService's `onLedger`);
 * - `backupSnapshot(ok)`: a scheduled snapshot finished (or failed).
 *
 * Wired in runtime.ts (callers do nothing):
 * - `watchQueue(queue)`: job durations, queue wait; job counts by status and type and the jobs that ended
 *   in the last minute, read at scrape from the store's counters and the live queue's indexes (never history rows);
 * - `watchAdmission(admission)`: back-pressure limits, their use (read at scrape) and refusals;
 * - `watchItems(queue)`: batch item durations, from the engine's `item:attempt` events;
 * - `watchWebhookDeliveries(queue, type)`: delivery outcomes, from the delivery jobs' events;
 * - `watchSockets(count)`: open WebSocket connections (read at scrape);
 * - `providerCall(call)`: the provider registry's `onCall` — requests, errors and latency by provider and
 *   class (`ok`, `aborted`, or the failure's code such as `provider_rate_limited`);
 * - `watchDatabase(path)`: SQLite file and WAL sizes (read at scrape);
 * - `httpRequest(…)`: called per request by modules/ops/access.ts with the matched route pattern.
 */
import { statSync } from "node:fs";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import pkg from "../../../package.json";
import type { Job } from "../../db/schema";
import { ProviderError } from "../../providers/errors";
import type { ProviderCall } from "../../providers/registry";
import { JobFailure, type Queue } from "../../queue";
import type { Admission, QueueUsage } from "../generate/service";

const JOB_STATUSES = ["waiting", "delayed", "active", "completed", "partial", "failed", "cancelled"] as const;

const SECONDS_SHORT = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SECONDS_LONG = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];
const SECONDS_WAIT = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800];

/** A failure's class for labels: its stable code, never its message (unbounded). */
export function failureClass(err: unknown): string {
  if (err instanceof JobFailure || err instanceof ProviderError) return err.code;
  if (err instanceof Error && err.name === "AbortError") return "aborted";
  return "internal";
}

export class Metrics {
  readonly registry = new Registry();
  readonly #http: { count: Counter; seconds: Histogram };
  readonly #jobSeconds: Histogram;
  readonly #jobWait: Histogram;
  readonly #itemSeconds: Histogram;
  readonly #provider: { count: Counter; errors: Counter; seconds: Histogram };
  readonly #render: Histogram;
  #wsCount: () => number = () => 0;
  readonly #webhooks: Counter;
  readonly #credits: Counter;
  readonly #backups: Counter;
  readonly #lastBackup: Gauge;

  constructor() {
    const registers = [this.registry];
    this.#http = {
      count: new Counter({
        name: "easel_http_requests_total",
        help: "HTTP requests by method, matched route pattern and status",
        labelNames: ["method", "route", "status"],
        registers,
      }),
      seconds: new Histogram({
        name: "easel_http_request_duration_seconds",
        help: "Time to the response headers, by method and route pattern",
        labelNames: ["method", "route"],
        buckets: SECONDS_SHORT,
        registers,
      }),
    };
    this.#jobSeconds = new Histogram({
      name: "easel_job_duration_seconds",
      help: "Finished jobs: their last attempt (finished_at - started_at), by type and end status",
      labelNames: ["type", "status"],
      buckets: SECONDS_LONG,
      registers,
    });
    this.#jobWait = new Histogram({
      name: "easel_job_wait_seconds",
      help: "Queue wait of each attempt: started_at - run_at (when it became due), by type",
      labelNames: ["type"],
      buckets: SECONDS_WAIT,
      registers,
    });
    this.#itemSeconds = new Histogram({
      name: "easel_job_item_duration_seconds",
      help: "Batch item attempts, by job type and outcome (ok or the failure code)",
      labelNames: ["type", "class"],
      buckets: SECONDS_LONG,
      registers,
    });
    this.#provider = {
      count: new Counter({
        name: "easel_provider_requests_total",
        help: "Provider generate calls by provider and class (ok or the failure code)",
        labelNames: ["provider", "class"],
        registers,
      }),
      errors: new Counter({
        name: "easel_provider_errors_total",
        help: "Failed provider generate calls by provider and failure code",
        labelNames: ["provider", "class"],
        registers,
      }),
      seconds: new Histogram({
        name: "easel_provider_request_duration_seconds",
        help: "Provider generate calls as jobs see them (including rate-limit waits), by provider and class",
        labelNames: ["provider", "class"],
        buckets: SECONDS_LONG,
        registers,
      }),
    };
    this.#render = new Histogram({
      name: "easel_card_render_duration_seconds",
      help: "Card renders",
      buckets: SECONDS_SHORT,
      registers,
    });
    const metrics = this;
    new Gauge({
      name: "easel_ws_connections",
      help: "Open WebSocket connections",
      registers,
      collect() {
        this.set(metrics.#wsCount());
      },
    });
    this.#webhooks = new Counter({
      name: "easel_webhook_deliveries_total",
      help: "Webhook delivery attempts by outcome",
      labelNames: ["outcome"],
      registers,
    });
    this.#credits = new Counter({
      name: "easel_credits_total",
      help: "Credits moved, by ledger reason (charge, refund, grant, debit, instant)",
      labelNames: ["kind"],
      registers,
    });
    this.#backups = new Counter({
      name: "easel_backup_snapshots_total",
      help: "Scheduled database snapshots by result",
      labelNames: ["result"],
      registers,
    });
    this.#lastBackup = new Gauge({
      name: "easel_backup_last_success_timestamp_seconds",
      help: "When the last scheduled snapshot succeeded (unix seconds)",
      registers,
    });
    new Gauge({
      name: "easel_build_info",
      help: "Always 1; the version is a label",
      labelNames: ["version"],
      registers,
    }).set({ version: pkg.version }, 1);
    registerProcessMetrics(this.registry);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text (collects the scrape-time gauges first). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  observeRender(ms: number): void {
    this.#render.observe(ms / 1000);
  }

  /** Open WebSocket connections, read at scrape. */
  watchSockets(count: () => number): void {
    this.#wsCount = count;
  }

  /** Credits moved by one ledger row (its reason: charge, refund, grant, instant, debit). */
  credits(reason: string, delta: number): void {
    if (delta !== 0) this.#credits.inc({ kind: reason }, Math.abs(delta));
  }

  /** Webhook delivery attempts by outcome, from the `type` jobs that carry them. */
  watchWebhookDeliveries(queue: Queue, type: string): void {
    const count = (outcome: string) => (e: { job: Job }) => {
      if (e.job.type === type) this.#webhooks.inc({ outcome });
    };
    queue.events.on("job:completed", count("delivered"));
    queue.events.on("job:retrying", count("retried"));
    queue.events.on("job:failed", count("failed"));
  }

  backupSnapshot(ok: boolean, at = Date.now()): void {
    this.#backups.inc({ result: ok ? "ok" : "failed" });
    if (ok) this.#lastBackup.set(at / 1000);
  }

  httpRequest(method: string, route: string, status: number, seconds: number): void {
    this.#http.count.inc({ method, route, status: String(status) });
    this.#http.seconds.observe({ method, route }, seconds);
  }

  /** Job durations and queue waits from the queue's events; job counts and worker slots at scrape. */
  watchQueue(queue: Queue, concurrency: number): () => void {
    const finished = (status: string) => (e: { job: Job }) => {
      const { job } = e;
      if (job.startedAt != null && job.finishedAt != null) {
        this.#jobSeconds.observe({ type: job.type, status }, (job.finishedAt - job.startedAt) / 1000);
      }
    };
    const offs = [
      queue.events.on("job:active", ({ job }) => {
        if (job.startedAt == null) return;
        const due = Math.max(job.runAt, job.createdAt);
        this.#jobWait.observe({ type: job.type }, Math.max(0, job.startedAt - due) / 1000);
      }),
      queue.events.on("job:completed", finished("completed")),
      queue.events.on("job:partial", finished("partial")),
      queue.events.on("job:failed", finished("failed")),
      queue.events.on("job:cancelled", finished("cancelled")),
    ];
    const registers = [this.registry];
    new Gauge({
      name: "easel_jobs",
      help: "Jobs in the database by status and type (delayed: queued with run_at in the future)",
      labelNames: ["status", "type"],
      registers,
      async collect() {
        const { byType } = await queue.stats();
        this.reset();
        for (const [type, counts] of Object.entries(byType)) {
          for (const status of JOB_STATUSES) this.set({ status, type }, counts[status] ?? 0);
        }
      },
    });
    new Gauge({
      name: "easel_jobs_finished_last_minute",
      help: "Jobs that ended in the last complete minute, by type and end status (from the database's rollup, so every process sharing it)",
      labelNames: ["type", "status"],
      registers,
      async collect() {
        const minute = Math.floor(queue.now() / 60_000) - 1;
        const rows = await queue.throughput(null, minute, minute + 1);
        this.reset();
        for (const r of rows) this.set({ type: r.type, status: r.status }, r.n);
      },
    });
    new Gauge({
      name: "easel_worker_slots",
      help: "Worker slots of this process by state",
      labelNames: ["state"],
      registers,
      collect() {
        const free = queue.freeSlots;
        this.set({ state: "free" }, free);
        this.set({ state: "busy" }, Math.max(0, concurrency - free));
      },
    });
    return () => {
      for (const off of offs) off();
    };
  }

  /**
   * Back-pressure: the limits, their use and refusals (counted as they happen); the queue's use is read
   * once per scrape and shared by the gauges.
   */
  watchAdmission(admission: Admission): void {
    const refusals = new Counter({
      name: "easel_queue_refusals_total",
      help: "Generations refused by back-pressure: owner_limit (429) or queue_full (503)",
      labelNames: ["reason"],
      registers: [this.registry],
    });
    admission.onRefuse((reason) => refusals.inc({ reason }));
    let read: { at: number; usage: Promise<QueueUsage> } | null = null;
    const usage = (): Promise<QueueUsage> => {
      const at = performance.now();
      if (!read || at - read.at > 1000) read = { at, usage: admission.usage(1) };
      return read.usage;
    };
    const gauge = (name: string, help: string, value: (u: QueueUsage) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        async collect() {
          this.set(value(await usage()));
        },
      });
    new Gauge({
      name: "easel_queue_limit",
      help: "Back-pressure limits: per_owner (MAX_QUEUED_PER_OWNER) and depth (MAX_QUEUE_DEPTH); 0 is none",
      labelNames: ["limit"],
      registers: [this.registry],
      async collect() {
        const { limits } = await usage();
        this.set({ limit: "per_owner" }, limits.maxQueuedPerOwner ?? 0);
        this.set({ limit: "depth" }, limits.maxQueueDepth ?? 0);
      },
    });
    gauge(
      "easel_queue_depth",
      "Queued jobs of every kind, delayed ones too (what MAX_QUEUE_DEPTH bounds)",
      (u) => u.queued,
    );
    gauge(
      "easel_queue_owner_queued_max",
      "Most queued generations of any one owner (what MAX_QUEUED_PER_OWNER bounds)",
      (u) => u.busiestOwners[0]?.queued ?? 0,
    );
    new Gauge({
      name: "easel_queue_oldest_waiting_seconds",
      help: "How long the longest-waiting due job of each type has waited (types with one waiting)",
      labelNames: ["type"],
      registers: [this.registry],
      async collect() {
        const { oldestWaitingMsByType } = await usage();
        this.reset();
        for (const [type, ms] of Object.entries(oldestWaitingMsByType)) this.set({ type }, ms / 1000);
      },
    });
  }

  /** Times every batch item attempt, from the engine's `item:attempt` events. */
  watchItems(queue: Queue): void {
    queue.events.on("item:attempt", ({ job, seconds, error }) =>
      this.#itemSeconds.observe(
        { type: job.type, class: error === null ? "ok" : failureClass(error) },
        seconds,
      ),
    );
  }

  /** One provider call (the registry's `onCall`): counted and timed by provider and class. */
  providerCall(call: ProviderCall): void {
    const cls = call.error === null ? "ok" : call.aborted ? "aborted" : failureClass(call.error);
    this.#provider.count.inc({ provider: call.provider, class: cls });
    if (cls !== "ok") this.#provider.errors.inc({ provider: call.provider, class: cls });
    this.#provider.seconds.observe({ provider: call.provider, class: cls }, call.seconds);
  }

  /** SQLite main file and WAL sizes, read at scrape. */
  watchDatabase(path: string): void {
    new Gauge({
      name: "easel_sqlite_bytes",
      help: "Size of the SQLite database files",
      labelNames: ["file"],
      registers: [this.registry],
      collect() {
        this.set({ file: "db" }, fileSize(path));
        this.set({ file: "wal" }, fileSize(`${path}-wal`));
      },
    });
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * The usual process_* series. prom-client's collectDefaultMetrics is not used: some of its collectors
 * (event-loop lag) print "Nan" under Bun, which breaks the whole scrape.
 */
function registerProcessMetrics(registry: Registry): void {
  const registers = [registry];
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes",
    registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: "process_heap_bytes",
    help: "JavaScript heap in use, in bytes",
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Counter({
    name: "process_cpu_seconds_total",
    help: "User and system CPU time spent, in seconds",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  new Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process (unix seconds)",
    registers,
  }).set(Math.round(performance.timeOrigin / 1000));
}
