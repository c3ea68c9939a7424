/**
 * Fake Black Forest Labs API (docs/providers.md "Black Forest Labs").
 *
 * Happy path: `POST /v1/<model>` with the right `x-key` validates the body like the real API (a prompt;
 * width/height 256–1440 in multiples of 32 where given) and answers `{id, polling_url}`. The polling URL lives
 * under `/regional/` (the real one names a regional host), so a client that builds its own URL instead of using
 * the returned one gets a 404. Each poll moves the task on: `Pending` (with `progress`) × `pendingPolls`, then
 * `Ready` with `result.sample`, a signed URL under `/delivery/` that the fake serves until `behaviour.expired`.
 * `behaviour.outcome` ends tasks as `Request Moderated` / `Content Moderated` / `Error` / `Task not found`.
 * Errors in BFL's own shapes (`{detail}`) are built by `bflError.*` for `server.script(...)`.
 */
import { FakeServer, json, type RecordedRequest, testImage } from "./base";

export type BflBehaviour = {
  pendingPolls: number;
  /** How a task ends. */
  outcome: "Ready" | "Request Moderated" | "Content Moderated" | "Error" | "Task not found";
  /** Delivery URLs answer 403 as an expired signature does. */
  expired: boolean;
};

type Task = { id: string; model: string; polls: number; seed: number };

const defaults = (): BflBehaviour => ({ pendingPolls: 2, outcome: "Ready", expired: false });

export class BflFake {
  readonly server: FakeServer;
  behaviour: BflBehaviour = defaults();
  readonly tasks = new Map<string, Task>();
  #image: Uint8Array = new Uint8Array();
  #next = 1;

  constructor(readonly apiKey = "bfl-test-key") {
    this.server = new FakeServer((req) => this.#route(req));
  }

  async start(): Promise<this> {
    this.#image = await testImage({ format: "png", width: 32, height: 32, color: "#aa3344" });
    await this.server.start();
    return this;
  }

  get url(): string {
    return this.server.url;
  }

  get image(): Uint8Array {
    return this.#image;
  }

  /** Task submissions (not polls or downloads). */
  get submissions(): RecordedRequest[] {
    return this.server.requests.filter((r) => r.method === "POST" && r.path.startsWith("/v1/"));
  }

  reset(): void {
    this.server.reset();
    this.tasks.clear();
    this.#next = 1;
    this.behaviour = defaults();
  }

  stop(): Promise<void> {
    return this.server.stop();
  }

  #submit(req: RecordedRequest): Response {
    if (req.headers.get("x-key") !== this.apiKey) return bflError.unauthenticated();
    const body = (req.json ?? {}) as Record<string, unknown>;
    const invalid: Array<{ loc: string[]; msg: string; type: string }> = [];
    if (typeof body.prompt !== "string" || body.prompt === "") {
      invalid.push({ loc: ["body", "prompt"], msg: "Field required", type: "missing" });
    }
    for (const side of ["width", "height"]) {
      const v = body[side];
      if (v === undefined) continue;
      if (typeof v !== "number" || v < 256 || v > 1440 || v % 32 !== 0) {
        invalid.push({
          loc: ["body", side],
          msg: "Input should be a multiple of 32 between 256 and 1440",
          type: "value_error",
        });
      }
    }
    if (invalid.length > 0) return json({ detail: invalid }, 422);
    const task: Task = {
      id: `task-${this.#next++}`,
      model: req.path.slice("/v1/".length),
      polls: 0,
      seed: typeof body.seed === "number" ? body.seed : 1234,
    };
    this.tasks.set(task.id, task);
    return json({ id: task.id, polling_url: `${this.url}/regional/us1/v1/get_result?id=${task.id}` });
  }

  #poll(req: RecordedRequest): Response {
    if (req.headers.get("x-key") !== this.apiKey) return bflError.unauthenticated();
    const task = this.tasks.get(req.query.get("id") ?? "");
    if (!task || this.behaviour.outcome === "Task not found") {
      return json({ id: req.query.get("id"), status: "Task not found", result: null, progress: null });
    }
    task.polls += 1;
    if (task.polls <= this.behaviour.pendingPolls) {
      const progress = task.polls / (this.behaviour.pendingPolls + 1);
      return json({ id: task.id, status: "Pending", result: null, progress });
    }
    const outcome = this.behaviour.outcome;
    if (outcome !== "Ready") {
      const details = outcome.endsWith("Moderated")
        ? { "Moderation Reasons": ["Derivative Works Filter"] }
        : null;
      return json({ id: task.id, status: outcome, result: null, progress: null, details });
    }
    const sample = `${this.url}/delivery/${task.id}/sample.png?se=2026-01-01T00%3A10%3A00Z&sig=fake`;
    return json({
      id: task.id,
      status: "Ready",
      result: { sample, prompt: "…", seed: task.seed, start_time: 1, end_time: 2, duration: 1 },
      progress: null,
    });
  }

  #route(req: RecordedRequest): Response | undefined {
    if (req.method === "POST" && req.path.startsWith("/v1/")) return this.#submit(req);
    if (req.method === "GET" && req.path === "/regional/us1/v1/get_result") return this.#poll(req);
    if (req.method === "GET" && req.path.startsWith("/delivery/")) {
      if (this.behaviour.expired) {
        return new Response("<Error><Code>AuthenticationFailed</Code></Error>", { status: 403 });
      }
      return new Response(this.#image, { headers: { "content-type": "image/png" } });
    }
    return undefined;
  }
}

/** Error answers as BFL sends them. */
export const bflError = {
  unauthenticated: () => json({ detail: "Not authenticated - Invalid Authentication" }, 403),
  /** More than 24 active tasks; `retryAfter` adds the standard header when a test wants one. */
  activeTasks: (retryAfter?: number) =>
    json(
      { detail: "You have exceeded the number of active tasks. Please wait for some to finish." },
      429,
      retryAfter === undefined ? {} : { "retry-after": String(retryAfter) },
    ),
  insufficientCredits: () =>
    json({ detail: "Insufficient credits. Visit https://api.bfl.ai to add credits." }, 402),
  internal: () => json({ detail: "Internal Server Error" }, 500),
  unavailable: () => json({ detail: "Service temporarily unavailable" }, 503),
};
