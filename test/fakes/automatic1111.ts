/**
 * Fake AUTOMATIC1111 / Forge API (docs/providers.md "AUTOMATIC1111 / Forge").
 *
 * `POST /sdapi/v1/txt2img|img2img` answers `{images: [base64 PNG], parameters, info: "<JSON>"}` with
 * `batch_size` images (plus a leading grid when `behaviour.grid`). With `behaviour.progressSteps = k` the call
 * blocks like the real one: each `GET /sdapi/v1/progress` advances it by 1/k and the k-th poll releases it, so
 * progress is deterministic. `POST /sdapi/v1/interrupt` releases a blocked call (as A1111 returns what it has).
 * With `auth` set, every route demands HTTP Basic credentials, as `--api-auth` does. Errors: `a1111Error.*`.
 */
import { FakeServer, json, type RecordedRequest, testImage } from "./base";

export type A1111Behaviour = { progressSteps: number; grid: boolean };

const defaults = (): A1111Behaviour => ({ progressSteps: 0, grid: false });

type Pending = { step: number; release: () => void };

export class Automatic1111Fake {
  readonly server: FakeServer;
  behaviour: A1111Behaviour = defaults();
  interrupts = 0;
  #pending: Pending | undefined;
  #image = "";
  #bytes: Uint8Array = new Uint8Array();

  constructor(readonly auth?: { username: string; password: string }) {
    this.server = new FakeServer((req) => this.#route(req));
  }

  async start(): Promise<this> {
    this.#bytes = await testImage({ format: "png", width: 16, height: 16, color: "#aa3300" });
    this.#image = Buffer.from(this.#bytes).toString("base64");
    await this.server.start();
    return this;
  }

  get url(): string {
    return this.server.url;
  }

  get image(): Uint8Array {
    return this.#bytes;
  }

  reset(): void {
    this.server.reset();
    this.#pending?.release();
    this.#pending = undefined;
    this.interrupts = 0;
    this.behaviour = defaults();
  }

  async stop(): Promise<void> {
    this.#pending?.release();
    await this.server.stop();
  }

  #authorized(req: RecordedRequest): boolean {
    if (!this.auth) return true;
    const token = Buffer.from(`${this.auth.username}:${this.auth.password}`).toString("base64");
    return req.headers.get("authorization") === `Basic ${token}`;
  }

  async #generate(req: RecordedRequest): Promise<Response> {
    const body = req.json as { batch_size?: number; seed?: number };
    const n = body.batch_size ?? 1;
    if (this.behaviour.progressSteps > 0) {
      await new Promise<void>((release) => {
        this.#pending = { step: 0, release };
      });
      this.#pending = undefined;
    }
    const seed = body.seed === undefined || body.seed === -1 ? 1000 : body.seed;
    const allSeeds = Array.from({ length: n }, (_, i) => seed + i);
    const images = Array<string>(n).fill(this.#image);
    if (this.behaviour.grid) images.unshift(this.#image);
    const info = {
      seed,
      all_seeds: allSeeds,
      index_of_first_image: this.behaviour.grid ? 1 : 0,
      prompt: "…",
    };
    return json({ images, parameters: body, info: JSON.stringify(info) });
  }

  #progress(): Response {
    const p = this.#pending;
    if (!p) return json({ progress: 0, eta_relative: 0, state: { job_count: 0 }, current_image: null });
    p.step += 1;
    const progress = p.step / this.behaviour.progressSteps;
    if (progress >= 1) {
      p.release();
      return json({ progress: 0, eta_relative: 0, state: { job_count: 0 }, current_image: null });
    }
    return json({ progress, eta_relative: 1 - progress, state: { job_count: 1, sampling_step: p.step } });
  }

  #route(req: RecordedRequest): Response | Promise<Response> | undefined {
    if (!this.#authorized(req))
      return json({ detail: "Incorrect credentials" }, 401, { "www-authenticate": "Basic" });
    if (req.method === "POST" && /^\/sdapi\/v1\/(txt2img|img2img)$/.test(req.path))
      return this.#generate(req);
    if (req.method === "GET" && req.path === "/sdapi/v1/progress") return this.#progress();
    if (req.method === "POST" && req.path === "/sdapi/v1/interrupt") {
      this.interrupts += 1;
      this.#pending?.release();
      return json({});
    }
    return undefined;
  }
}

/** Error answers as A1111 (FastAPI) sends them. */
export const a1111Error = {
  validation: () =>
    json(
      {
        detail: [{ loc: ["body", "width"], msg: "value is not a valid integer", type: "type_error.integer" }],
      },
      422,
    ),
  outOfMemory: () =>
    json(
      {
        error: "OutOfMemoryError",
        detail: "",
        body: "",
        errors: "CUDA out of memory. Tried to allocate 2.00 GiB",
      },
      500,
    ),
  apiDisabled: () => json({ detail: "Not Found" }, 404),
  /** A proxy or gateway in front of a shared box (A1111 itself never answers 429). */
  busy: (seconds: number) => json({ detail: "Too Many Requests" }, 429, { "retry-after": String(seconds) }),
  /** A prompt-filter extension raising FastAPI's HTTPException (A1111 has no safety API of its own). */
  promptRefused: () => json({ detail: "Prompt refused: NSFW terms are blocked on this server" }, 400),
};
