/**
 * Shared base for fake provider servers (one real HTTP server per test file, port 0).
 *
 *   const fake = await new FakeServer(routes).start();   // routes: the provider's happy path
 *   fake.script(reply(json({ error: … }, 429, { "retry-after": "3" })), { path: "/images/generations" });
 *   fake.script(HANG);                                   // next request never answers
 *   … run the adapter against fake.url …
 *   expect(fake.requests[0]).toMatchObject({ method: "POST", path: "/v1/images/generations" });
 *   await fake.stop();
 *
 * - `requests`: every request received, in order, with headers and the body parsed by content type
 *   (`json`, `form` for multipart/urlencoded with files as `{name, type, size, bytes}`, `text`, `bytes`).
 * - `script(reply, match?)`: queue a one-shot reply; the first queued reply whose `match` (method, exact
 *   path or RegExp) fits the request is used and removed. Unscripted requests go to the route handler.
 * - A reply is a Response, `HANG` (never answers; released when the client disconnects or the server stops),
 *   or a function `(req, fake) => Response | Promise<Response>`.
 * - `json()`, `testImage()` build bodies; `testImage` makes real PNG/JPEG/WebP bytes with sharp.
 */
import sharp from "sharp";

export type FormValue = string | { name: string; type: string; size: number; bytes: Uint8Array };

export type RecordedRequest = {
  /** When the fake received it (epoch ms). */
  at: number;
  method: string;
  /** Path without the query string, e.g. `/v1/images/generations`. */
  path: string;
  query: URLSearchParams;
  headers: Headers;
  /** Parsed JSON body, when the content type was JSON. */
  json?: unknown;
  /** Multipart or urlencoded fields; repeated names (`image[]`) keep every value. */
  form?: Array<[string, FormValue]>;
  text?: string;
  bytes: Uint8Array;
};

export const HANG = Symbol("hang");

export type ReplyFn = (req: RecordedRequest, fake: FakeServer) => Response | Promise<Response>;
export type Reply = Response | typeof HANG | ReplyFn;

export type Match = { method?: string; path?: string | RegExp };

/** Handles requests nobody scripted; return undefined for a 404. */
export type Routes = (req: RecordedRequest, fake: FakeServer) => Response | Promise<Response> | undefined;

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** Real image bytes (solid colour) so adapters and sniffers see genuine files. */
export async function testImage(
  opts: { format?: "png" | "jpeg" | "webp"; width?: number; height?: number; color?: string } = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const buf = await sharp({
    create: {
      width: opts.width ?? 8,
      height: opts.height ?? 8,
      channels: 3,
      background: opts.color ?? "#3366cc",
    },
  })
    .toFormat(opts.format ?? "png")
    .toBuffer();
  return new Uint8Array(buf);
}

function matches(m: Match | undefined, req: RecordedRequest): boolean {
  if (!m) return true;
  if (m.method && m.method.toUpperCase() !== req.method) return false;
  if (m.path === undefined) return true;
  return typeof m.path === "string" ? m.path === req.path : m.path.test(req.path);
}

async function record(request: Request): Promise<RecordedRequest> {
  const url = new URL(request.url);
  const bytes = new Uint8Array(await request.clone().arrayBuffer());
  const type = request.headers.get("content-type") ?? "";
  const rec: RecordedRequest = {
    at: Date.now(),
    method: request.method,
    path: url.pathname,
    query: url.searchParams,
    headers: request.headers,
    bytes,
  };
  if (bytes.length === 0) return rec;
  if (type.includes("multipart/form-data") || type.includes("application/x-www-form-urlencoded")) {
    const fd = await request.formData();
    rec.form = [];
    for (const [k, v] of fd.entries()) {
      rec.form.push([
        k,
        typeof v === "string"
          ? v
          : { name: v.name, type: v.type, size: v.size, bytes: new Uint8Array(await v.arrayBuffer()) },
      ]);
    }
    return rec;
  }
  rec.text = new TextDecoder().decode(bytes);
  if (type.includes("json")) {
    try {
      rec.json = JSON.parse(rec.text);
    } catch {
      // Recorded as text; the test asserts what the adapter sent.
    }
  }
  return rec;
}

export class FakeServer {
  readonly requests: RecordedRequest[] = [];
  #queue: Array<{ reply: Reply; match?: Match }> = [];
  #server: ReturnType<typeof Bun.serve> | undefined;
  #hung = new Set<() => void>();

  constructor(private readonly routes: Routes = () => undefined) {}

  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  get url(): string {
    if (!this.#server) throw new Error("fake server not started");
    return `http://127.0.0.1:${this.#server.port}`;
  }

  async start(): Promise<this> {
    this.#server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      // A hanging reply must outlive Bun's default 10 s idle timeout only as long as the test wants.
      idleTimeout: 0,
      fetch: (request) => this.#handle(request),
    });
    return this;
  }

  async stop(): Promise<void> {
    for (const release of this.#hung) release();
    this.#hung.clear();
    await this.#server?.stop(true);
    this.#server = undefined;
  }

  script(reply: Reply, match?: Match): this {
    this.#queue.push(match ? { reply, match } : { reply });
    return this;
  }

  /** Requests whose path matches (exact string or RegExp). */
  requestsTo(path: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => matches({ path }, r));
  }

  /** Drops scripted replies and the request log, for reuse across tests of one file. */
  reset(): void {
    this.#queue = [];
    this.requests.length = 0;
  }

  async #handle(request: Request): Promise<Response> {
    const rec = await record(request);
    this.requests.push(rec);
    const i = this.#queue.findIndex((q) => matches(q.match, rec));
    const scripted = i >= 0 ? this.#queue.splice(i, 1)[0]?.reply : undefined;
    if (scripted === HANG) return this.#hang(request);
    if (scripted instanceof Response) return scripted;
    if (scripted) return scripted(rec, this);
    return (
      (await this.routes(rec, this)) ?? json({ error: `fake: no route for ${rec.method} ${rec.path}` }, 404)
    );
  }

  #hang(request: Request): Promise<Response> {
    return new Promise((resolve) => {
      const release = () => {
        this.#hung.delete(release);
        resolve(new Response(null, { status: 499 }));
      };
      this.#hung.add(release);
      request.signal.addEventListener("abort", release, { once: true });
    });
  }
}
