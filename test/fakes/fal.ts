/**
 * Fake fal.ai queue (docs/providers.md "fal.ai queue").
 *
 * Happy path: `POST /<owner>/<app>[/<path>]` answers the four URLs; `GET status_url` walks
 * IN_QUEUE (× `queuedPolls`, position counting down) → IN_PROGRESS (× `progressPolls`, tqdm-style logs) →
 * COMPLETED; `GET response_url` gives `{images, seed, has_nsfw_concepts}` with one image per `num_images`,
 * flagged per `behaviour.nsfw`; image files are served by the fake. `behaviour.stuck` keeps the request
 * IN_PROGRESS until `PUT cancel_url`. Errors in fal's own shapes are built by `falError.*`.
 */
import { FakeServer, json, type RecordedRequest, testImage } from "./base";

export type FalBehaviour = {
  queuedPolls: number;
  progressPolls: number;
  /** `has_nsfw_concepts` per image (missing entries are false). */
  nsfw: boolean[];
  stuck: boolean;
  /** The result request fails with this reply instead of giving images. */
  resultError?: () => Response;
};

type FalRequest = { id: string; app: string; polls: number; images: number; cancelled: boolean };

const defaults = (): FalBehaviour => ({ queuedPolls: 2, progressPolls: 2, nsfw: [], stuck: false });

export class FalFake {
  readonly server: FakeServer;
  behaviour: FalBehaviour = defaults();
  readonly queue = new Map<string, FalRequest>();
  #image: Uint8Array = new Uint8Array();
  #next = 1;

  constructor() {
    this.server = new FakeServer((req) => this.#route(req));
  }

  async start(): Promise<this> {
    this.#image = await testImage({ format: "jpeg", width: 16, height: 16 });
    await this.server.start();
    return this;
  }

  get url(): string {
    return this.server.url;
  }

  get image(): Uint8Array {
    return this.#image;
  }

  reset(): void {
    this.server.reset();
    this.queue.clear();
    this.#next = 1;
    this.behaviour = defaults();
  }

  stop(): Promise<void> {
    return this.server.stop();
  }

  #submit(req: RecordedRequest): Response {
    // fal's request URLs use only owner/app, whatever sub-path the model was submitted to.
    const app = req.path.split("/").slice(1, 3).join("/");
    const body = req.json as { num_images?: number } | undefined;
    const r: FalRequest = {
      id: `req-${this.#next++}`,
      app,
      polls: 0,
      images: body?.num_images ?? 1,
      cancelled: false,
    };
    this.queue.set(r.id, r);
    const base = `${this.url}/${app}/requests/${r.id}`;
    return json({
      request_id: r.id,
      status_url: `${base}/status`,
      response_url: base,
      cancel_url: `${base}/cancel`,
    });
  }

  #status(r: FalRequest): Response {
    r.polls += 1;
    const { queuedPolls, progressPolls, stuck } = this.behaviour;
    if (r.polls <= queuedPolls && !stuck) {
      return json({ status: "IN_QUEUE", queue_position: queuedPolls - r.polls, response_url: "" }, 202);
    }
    if (stuck || r.polls <= queuedPolls + progressPolls) {
      const step = r.polls - queuedPolls;
      const pct = Math.round((step / (progressPolls + 1)) * 100);
      const logs = [
        { message: "loading model", level: "INFO" },
        { message: `${pct}%|####| ${step}/${progressPolls + 1}`, level: "INFO" },
      ];
      return json({ status: "IN_PROGRESS", logs }, 202);
    }
    return json({ status: "COMPLETED", logs: [] }, 200);
  }

  #result(r: FalRequest): Response {
    if (this.behaviour.resultError) return this.behaviour.resultError();
    const images = Array.from({ length: r.images }, (_, i) => ({
      url: `${this.url}/files/${r.id}-${i}.jpg`,
      width: 16,
      height: 16,
      content_type: "image/jpeg",
    }));
    const flags = images.map((_, i) => this.behaviour.nsfw[i] ?? false);
    return json({ images, seed: 987654, has_nsfw_concepts: flags, prompt: "…", timings: { inference: 0.4 } });
  }

  #route(req: RecordedRequest): Response | undefined {
    if (req.method === "GET" && req.path.startsWith("/files/")) {
      return new Response(this.#image, { headers: { "content-type": "image/jpeg" } });
    }
    const m = /^\/[^/]+\/[^/]+\/requests\/([^/]+)(\/status|\/cancel)?$/.exec(req.path);
    if (!m) return req.method === "POST" ? this.#submit(req) : undefined;
    const r = this.queue.get(m[1] ?? "");
    if (!r) return json({ detail: "Request not found" }, 404);
    if (m[2] === "/cancel" && req.method === "PUT") {
      r.cancelled = true;
      return json({ status: "CANCELLATION_REQUESTED" }, 202);
    }
    if (m[2] === "/status") return this.#status(r);
    return this.#result(r);
  }
}

/** Error answers as fal sends them. */
export const falError = {
  validation: () =>
    json(
      {
        detail: [
          {
            loc: ["body", "num_images"],
            msg: "ensure this value is less than or equal to 4",
            type: "value_error.number.not_le",
          },
        ],
      },
      422,
    ),
  contentPolicy: () =>
    json(
      {
        detail: [
          {
            loc: ["body", "prompt"],
            msg: "The content could not be processed because it contained material flagged by a content checker.",
            type: "content_policy_violation",
            url: "https://docs.fal.ai/errors#content_policy_violation",
          },
        ],
      },
      422,
    ),
  unauthorized: () => json({ detail: "Authentication is required to access this application." }, 401),
  exhaustedBalance: () =>
    json(
      {
        detail: "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.",
      },
      403,
    ),
  rateLimited: (seconds: number) =>
    json({ detail: "Too many concurrent requests" }, 429, { "retry-after": String(seconds) }),
  runnerFailure: () =>
    json({ detail: "Internal server error" }, 500, { "x-fal-error-type": "runner_server_error" }),
  requestTimeout: () => json({ detail: "Request timed out" }, 504, { "x-fal-error-type": "request_timeout" }),
};
