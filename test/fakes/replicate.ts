/**
 * Fake Replicate API (docs/providers.md "Replicate"), served under `/v1` like the real one.
 *
 * Happy path: create answers `starting` (or a finished prediction when `behaviour.sync` and the client sent
 * `Prefer: wait`), each `GET urls.get` moves it one step (`processing` × `processingPolls`, then `succeeded`
 * with one output URL per `num_outputs`), output files are served by the fake. `behaviour.fail` ends the
 * prediction as `failed` with that error text; `behaviour.stuck` keeps it processing until cancelled.
 * Errors in Replicate's own shapes are built by `replicateError.*` for `fake.script(...)`.
 */
import { FakeServer, json, type RecordedRequest, testImage } from "./base";

export type ReplicateBehaviour = {
  /** Finish during the create call when the client asked `Prefer: wait`. */
  sync: boolean;
  /** `processing` answers before `succeeded`. */
  processingPolls: number;
  /** Output as one URL string instead of an array. */
  outputAsString: boolean;
  fail?: string;
  stuck: boolean;
};

type Prediction = { id: string; status: string; polls: number; outputs: number; logs: string };

export class ReplicateFake {
  readonly server: FakeServer;
  behaviour: ReplicateBehaviour = { sync: false, processingPolls: 2, outputAsString: false, stuck: false };
  readonly predictions = new Map<string, Prediction>();
  #image: Uint8Array = new Uint8Array();
  #next = 1;

  constructor() {
    this.server = new FakeServer((req) => this.#route(req));
  }

  async start(): Promise<this> {
    this.#image = await testImage({ format: "png", width: 16, height: 16 });
    await this.server.start();
    return this;
  }

  /** API base URL to give the adapter (`…/v1`). */
  get baseUrl(): string {
    return `${this.server.url}/v1`;
  }

  get image(): Uint8Array {
    return this.#image;
  }

  reset(): void {
    this.server.reset();
    this.predictions.clear();
    this.#next = 1;
    this.behaviour = { sync: false, processingPolls: 2, outputAsString: false, stuck: false };
  }

  stop(): Promise<void> {
    return this.server.stop();
  }

  #view(p: Prediction) {
    const urls = {
      get: `${this.baseUrl}/predictions/${p.id}`,
      cancel: `${this.baseUrl}/predictions/${p.id}/cancel`,
    };
    const files = Array.from({ length: p.outputs }, (_, i) => `${this.server.url}/files/${p.id}-${i}.png`);
    const output = p.status === "succeeded" ? (this.behaviour.outputAsString ? files[0] : files) : null;
    const error = p.status === "failed" ? (this.behaviour.fail ?? null) : null;
    return { id: p.id, status: p.status, output, error, logs: p.logs, urls };
  }

  #advance(p: Prediction): void {
    if (p.status === "canceled" || p.status === "succeeded" || p.status === "failed") return;
    p.polls += 1;
    if (this.behaviour.stuck || p.polls <= this.behaviour.processingPolls) {
      p.status = "processing";
      p.logs = `Using seed: 4242\n${Math.round((p.polls / (this.behaviour.processingPolls + 1)) * 100)}%|###`;
      return;
    }
    p.status = this.behaviour.fail ? "failed" : "succeeded";
  }

  #create(req: RecordedRequest) {
    const body = req.json as { input?: { num_outputs?: number } } | undefined;
    const p: Prediction = {
      id: `pred${this.#next++}`,
      status: "starting",
      polls: 0,
      outputs: body?.input?.num_outputs ?? 1,
      logs: "",
    };
    this.predictions.set(p.id, p);
    if (this.behaviour.sync && req.headers.get("prefer")?.startsWith("wait")) {
      p.status = this.behaviour.fail ? "failed" : "succeeded";
    }
    return json(this.#view(p), 201);
  }

  #route(req: RecordedRequest): Response | undefined {
    const create = /^\/v1\/(models\/[^/]+\/[^/]+\/)?predictions$/;
    if (req.method === "POST" && create.test(req.path)) return this.#create(req);
    const m = /^\/v1\/predictions\/([^/]+)(\/cancel)?$/.exec(req.path);
    const p = m ? this.predictions.get(m[1] ?? "") : undefined;
    if (m && !p) return json({ detail: "Not found." }, 404);
    if (p && m?.[2] && req.method === "POST") {
      p.status = "canceled";
      return json(this.#view(p));
    }
    if (p && req.method === "GET") {
      this.#advance(p);
      return json(this.#view(p));
    }
    if (req.method === "GET" && req.path.startsWith("/files/")) {
      return new Response(this.#image, { headers: { "content-type": "image/png" } });
    }
    return undefined;
  }
}

/** Error answers as Replicate sends them. */
export const replicateError = {
  throttled: (seconds: number) =>
    json({ detail: `Request was throttled. Expected available in ${seconds} seconds.`, status: 429 }, 429, {
      "retry-after": String(seconds),
    }),
  /** Replicate's documented throttle: the wait is only in the detail text, no Retry-After header. */
  throttledResets: (seconds: number) =>
    json({ detail: `Request was throttled. Your rate limit resets in ~${seconds}s.` }, 429),
  throttledNoHeader: () => json({ detail: "Request was throttled.", status: 429 }, 429),
  unauthorized: () =>
    json(
      { title: "Unauthenticated", detail: "You did not pass a valid authentication token", status: 401 },
      401,
    ),
  paymentRequired: () =>
    json(
      {
        title: "Insufficient credit",
        detail: "You have insufficient credit to run this model.",
        status: 402,
      },
      402,
    ),
  notFound: () =>
    json({ title: "Not found", detail: "The requested resource could not be found.", status: 404 }, 404),
  invalidInput: () =>
    json(
      {
        title: "Input validation failed",
        detail: "- input.num_outputs: Must be less than or equal to 4",
        status: 422,
        invalid_fields: [
          { type: "less_than_equal", field: "input.num_outputs", description: "Must be <= 4" },
        ],
      },
      422,
    ),
  serverError: () => json({ detail: "Internal server error", status: 500 }, 500),
};
