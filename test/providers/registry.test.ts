import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createProviderRegistry, ProviderLookupError } from "../../src/providers/registry";
import type { GenerateRequest, Provider } from "../../src/providers/types";
import { FakeServer, json, testImage } from "../fakes/base";
import { GeminiFake } from "../fakes/gemini";
import { HuggingFaceFake } from "../fakes/huggingface";
import { OpenAIFake } from "../fakes/openai";
import { FakeClock, flush } from "./fake-clock";

const ctx = () => ({ signal: new AbortController().signal });
const req: GenerateRequest = { prompt: "a kite", size: "64x64", n: 1 };

function lookupError(run: () => unknown): ProviderLookupError {
  try {
    run();
  } catch (err) {
    if (err instanceof ProviderLookupError) return err;
    throw err;
  }
  throw new Error("expected a ProviderLookupError");
}

/** A provider that records when each call starts and finishes only when released. */
function manualProvider(name: string, limits = { concurrency: 8, rpm: 0 }) {
  const started: number[] = [];
  const releases: Array<() => void> = [];
  const provider: Provider = {
    info: { name, defaultModel: "m", models: ["m"], supportsEdits: false, limits },
    requestCost: (r) => r.n,
    generate: (r) =>
      new Promise((resolve) => {
        started.push(r.n);
        releases.push(() => resolve([]));
      }),
  };
  const releaseAll = () => {
    for (const release of releases.splice(0)) release();
  };
  return { provider, started, releaseAll };
}

describe("provider registry: configuration", () => {
  test("zero config: only placeholder, and it is the default", async () => {
    const registry = createProviderRegistry();
    expect(registry.list().map((p) => p.name)).toEqual(["placeholder"]);
    expect(registry.defaultName).toBe("placeholder");
    const [img] = await registry.default().generate(req, ctx());
    expect(img?.mime).toBe("image/png");
  });

  test("unknown vs unconfigured providers are distinct typed errors", () => {
    const registry = createProviderRegistry();
    const notConfigured = lookupError(() => registry.get("openai"));
    expect(notConfigured).toMatchObject({ code: "provider_not_configured", status: 422, retryable: false });
    const notFound = lookupError(() => registry.get("midjourney"));
    expect(notFound).toMatchObject({ code: "provider_not_found", status: 422, retryable: false });
    expect(notFound.message).toContain("openai");
  });

  test("keys switch providers on; the default follows the preference order unless named", () => {
    const all = createProviderRegistry({
      openaiApiKey: "sk",
      hfToken: "hf",
      geminiApiKey: "g",
      replicateApiToken: "r8",
      falKey: "fal",
      comfyuiUrl: "http://127.0.0.1:1",
      a1111Url: "http://127.0.0.1:1",
      dashscopeApiKey: "ds",
    });
    expect(all.defaultName).toBe("openai");
    expect(all.list().map((p) => p.name)).toEqual([
      "openai",
      "gemini",
      "huggingface",
      "replicate",
      "fal",
      "dashscope",
      "comfyui",
      "automatic1111",
      "placeholder",
    ]);
    expect(createProviderRegistry({ hfToken: "hf", falKey: "f" }).defaultName).toBe("huggingface");
    expect(createProviderRegistry({ hfToken: "hf", defaultProvider: "placeholder" }).defaultName).toBe(
      "placeholder",
    );
    expect(() => createProviderRegistry({ defaultProvider: "gemini" })).toThrow(ProviderLookupError);
  });

  test("limit overrides show in list() and replace the adapter defaults", () => {
    const registry = createProviderRegistry({ openaiApiKey: "sk", limits: { openai: { rpm: 500 } } });
    expect(registry.get("openai").info.limits).toEqual({ concurrency: 4, rpm: 500 });
    expect(registry.get("placeholder").info.limits).toEqual({ concurrency: 4, rpm: 0 });
  });
});

describe("provider registry: base URLs reach the adapters", () => {
  let openai: OpenAIFake;
  let hf: HuggingFaceFake;
  let gemini: GeminiFake;
  let a1111: FakeServer;
  beforeAll(async () => {
    [openai, hf, gemini] = await Promise.all([
      OpenAIFake.create(),
      HuggingFaceFake.create(),
      GeminiFake.create(),
    ]);
    const png = Buffer.from(await testImage()).toString("base64");
    a1111 = await new FakeServer((r) =>
      r.path === "/sdapi/v1/txt2img"
        ? json({ images: [png], parameters: {}, info: "{}" })
        : json({ progress: 0 }),
    ).start();
  });
  afterAll(() => Promise.all([openai.stop(), hf.stop(), gemini.stop(), a1111.stop()]));

  test("generate(name) calls each configured service at its overridden URL", async () => {
    const registry = createProviderRegistry({
      openaiApiKey: "sk-o",
      openaiBaseUrl: openai.baseUrl,
      hfToken: "hf-t",
      hfBaseUrl: hf.url,
      geminiApiKey: "g-k",
      geminiBaseUrl: gemini.baseUrl,
      a1111Url: a1111.url,
      a1111Auth: "user:pa:ss",
    });
    for (const name of ["openai", "huggingface", "gemini", "automatic1111"]) {
      expect(await registry.generate(name, req, ctx())).toHaveLength(1);
    }
    expect(openai.requests[0]?.headers.get("authorization")).toBe("Bearer sk-o");
    expect(hf.requests[0]?.headers.get("authorization")).toBe("Bearer hf-t");
    expect(gemini.requests[0]?.headers.get("x-goog-api-key")).toBe("g-k");
    const basic = a1111.requestsTo("/sdapi/v1/txt2img")[0]?.headers.get("authorization");
    expect(basic).toBe(`Basic ${Buffer.from("user:pa:ss").toString("base64")}`);
  });
});

describe("provider registry: limits are applied around generate", () => {
  test("concurrency: get(name).generate and generate(name) share one limiter", async () => {
    const m = manualProvider("manual", { concurrency: 1, rpm: 0 });
    const registry = createProviderRegistry({ providers: [m.provider] });
    const a = registry.generate("manual", { ...req, n: 1 }, ctx());
    const b = registry.get("manual").generate({ ...req, n: 2 }, ctx());
    await flush();
    expect(m.started).toEqual([1]);
    expect(registry.stats().manual).toMatchObject({ active: 1, waiting: 1 });
    m.releaseAll();
    await a;
    await flush();
    expect(m.started).toEqual([1, 2]);
    m.releaseAll();
    await b;
  });

  test("rpm counts each call's requestCost", async () => {
    const clock = new FakeClock();
    const m = manualProvider("manual");
    const registry = createProviderRegistry({
      providers: [m.provider],
      limits: { manual: { rpm: 4 } },
      clock,
    });
    const runs = [3, 2].map((n) => registry.generate("manual", { ...req, n }, ctx()));
    await flush();
    expect(m.started).toEqual([3]);
    m.releaseAll();
    await clock.advance(60_000);
    expect(m.started).toEqual([3, 2]);
    m.releaseAll();
    await Promise.all(runs);
  });

  test("a caller's abort while queued rejects without calling the provider", async () => {
    const m = manualProvider("manual", { concurrency: 1, rpm: 0 });
    const registry = createProviderRegistry({ providers: [m.provider] });
    const first = registry.generate("manual", req, ctx());
    const ac = new AbortController();
    const queued = registry.generate("manual", req, { signal: ac.signal });
    ac.abort(new Error("cancelled"));
    await expect(queued).rejects.toThrow("cancelled");
    await flush();
    m.releaseAll();
    await first;
    expect(m.started).toEqual([1]);
  });
});

describe("provider registry: health", () => {
  /** A provider whose next outcomes are scripted: "ok", or an error to throw. */
  function scripted(outcomes: (string | Error)[]): Provider {
    return {
      info: {
        name: "scripted",
        defaultModel: "m",
        models: ["m"],
        supportsEdits: false,
        limits: { concurrency: 8, rpm: 0 },
      },
      generate: async () => {
        const next = outcomes.shift() ?? "ok";
        if (next instanceof Error) throw next;
        return [{ bytes: new Uint8Array([1]), mime: "image/png" }];
      },
    };
  }
  const coded = (code: string) => Object.assign(new Error(`${code} happened`), { code });

  test("counts successes and failures over 15 minutes; the latest failure with no success since is failing", async () => {
    const clock = new FakeClock();
    clock.t = 1_000_000;
    const p = scripted([
      "ok",
      coded("provider_unavailable"),
      coded("content_policy"),
      "ok",
      coded("provider_rate_limited"),
    ]);
    const registry = createProviderRegistry({ providers: [p], clock });
    const health = () => registry.stats().scripted!.health;
    expect(health().state).toBe("idle");
    await registry.generate("scripted", req, ctx());
    expect(health()).toMatchObject({
      ok: 1,
      failed: 0,
      state: "ok",
      lastError: null,
      lastSuccessAt: 1_000_000,
    });
    await registry.generate("scripted", req, ctx()).catch(() => undefined);
    expect(health()).toMatchObject({ ok: 1, failed: 1, state: "failing" });
    expect(health().lastError).toMatchObject({ code: "provider_unavailable", at: 1_000_000 });
    // A content-policy refusal is the provider answering: it counts as a success.
    await registry.generate("scripted", req, ctx()).catch(() => undefined);
    expect(health()).toMatchObject({ ok: 2, failed: 1, state: "degraded" });
    await registry.generate("scripted", req, ctx());
    clock.t += 10 * 60_000;
    await registry.generate("scripted", req, ctx()).catch(() => undefined);
    expect(health()).toMatchObject({ ok: 3, failed: 2, state: "failing" });
    // Fifteen minutes on, only the last call is still in the window.
    clock.t += 6 * 60_000;
    expect(health()).toMatchObject({ ok: 0, failed: 1, state: "failing" });
    clock.t += 10 * 60_000;
    expect(health()).toMatchObject({ ok: 0, failed: 0, state: "idle" });
    expect(health().lastError?.code).toBe("provider_rate_limited");
  });

  test("the request's own faults are the provider answering; an adapter's refusal before any call is nothing", async () => {
    const registry = createProviderRegistry({
      providers: [
        scripted([coded("provider_invalid_request"), coded("provider_unsupported"), coded("provider_auth")]),
      ],
    });
    const health = () => registry.stats().scripted!.health;
    await registry.generate("scripted", req, ctx()).catch(() => undefined);
    expect(health()).toMatchObject({ ok: 1, failed: 0, state: "ok" });
    await registry.generate("scripted", req, ctx()).catch(() => undefined);
    expect(health()).toMatchObject({ ok: 1, failed: 0, state: "ok" });
    await registry.generate("scripted", req, ctx()).catch(() => undefined);
    expect(health()).toMatchObject({
      ok: 1,
      failed: 1,
      state: "failing",
      lastError: { code: "provider_auth" },
    });
  });

  test("a cancelled call does not count against the provider", async () => {
    const registry = createProviderRegistry({ providers: [scripted([coded("provider_timeout")])] });
    const ac = new AbortController();
    ac.abort(new Error("cancelled"));
    await registry.generate("scripted", req, { signal: ac.signal }).catch(() => undefined);
    expect(registry.stats().scripted!.health).toMatchObject({ ok: 0, failed: 0, state: "idle" });
  });
});
