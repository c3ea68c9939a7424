/**
 * Fake Hugging Face Inference router (docs/providers.md "Hugging Face Inference"). Base URL: `fake.url`.
 * `POST /hf-inference/models/<owner>/<model>` answers raw JPEG bytes, or the tolerated JSON shapes when
 * `responseMode` says so. Models listed in `unknownModels` answer 404.
 */
import { FakeServer, HANG, json, type RecordedRequest, testImage } from "./base";

export class HuggingFaceFake extends FakeServer {
  responseMode: "bytes" | "b64json" | "url" = "bytes";
  image = new Uint8Array();
  unknownModels = new Set<string>();

  constructor() {
    super((req, fake) => (fake as HuggingFaceFake).route(req));
  }

  static async create(): Promise<HuggingFaceFake> {
    const fake = new HuggingFaceFake();
    fake.image = await testImage({ format: "jpeg", width: 16, height: 16 });
    return fake.start();
  }

  private route(req: RecordedRequest): Response | undefined {
    if (req.method === "GET" && req.path.startsWith("/files/")) {
      return new Response(this.image, { headers: { "content-type": "application/octet-stream" } });
    }
    const m = /^\/hf-inference\/models\/(.+)$/.exec(req.path);
    if (req.method !== "POST" || !m) return undefined;
    const model = decodeURIComponent(m[1] ?? "");
    if (this.unknownModels.has(model)) return json({ error: `Model ${model} does not exist` }, 404);
    if (this.responseMode === "b64json") {
      return json({ data: [{ b64_json: Buffer.from(this.image).toString("base64") }] });
    }
    if (this.responseMode === "url") return json({ output: [`${this.url}/files/out.jpg`] });
    return new Response(this.image, { headers: { "content-type": "image/jpeg" } });
  }

  loading(estimatedTime = 20): this {
    return this.script(
      json(
        { error: "Model black-forest-labs/FLUX.1-dev is currently loading", estimated_time: estimatedTime },
        503,
      ),
    );
  }

  rateLimited(headers: Record<string, string> = {}): this {
    return this.script(json({ error: "Rate limit reached. You reached free usage limit." }, 429, headers));
  }

  outOfCredits(): this {
    return this.script(
      json({ error: "You have exceeded your monthly included credits for Inference Providers." }, 402),
    );
  }

  badParameters(status: 400 | 422 = 422): this {
    return this.script(json({ error: "Input validation error: `width` must be a multiple of 8" }, status));
  }

  /**
   * A refusal relayed by the router in HF's `{error}` shape. docs/providers.md lists no safety code for Hugging Face;
   * the serving backend's checker message is all there is, so the adapter must read the text.
   */
  nsfwRefused(status: 400 | 422 = 400): this {
    return this.script(
      json({ error: "NSFW content detected: the request was flagged by the safety checker" }, status),
    );
  }

  unauthorized(): this {
    return this.script(json({ error: "Invalid credentials in Authorization header" }, 401));
  }

  serverError(status = 500): this {
    return this.script(json({ error: "Internal Server Error" }, status));
  }

  hang(): this {
    return this.script(HANG);
  }
}
