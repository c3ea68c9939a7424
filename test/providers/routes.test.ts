/**
 * `GET /api/providers` over HTTP: the enabled providers (and only those) with their models and effective
 * limits, the default first. (test/providers/http.test.ts is about the adapters' shared HTTP helper.)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../helpers";

type ProviderView = {
  name: string;
  defaultModel: string;
  models: string[];
  supportsEdits: boolean;
  capabilities: { models: Record<string, unknown>; anyModel?: unknown };
  limits: { concurrency: number; rpm: number };
};
type ProvidersBody = { providers: ProviderView[]; default: string };

async function providers(server: TestServer, key?: string | null): Promise<ProvidersBody> {
  const res = await server.api("/api/providers", key === undefined ? {} : { key });
  expect(res.status).toBe(200);
  return (await res.json()) as ProvidersBody;
}

describe("GET /api/providers with providers configured", () => {
  let server: TestServer;
  beforeAll(async () => {
    // Listing never calls a provider, so the URLs need not answer.
    server = await startTestServer({
      env: {
        OPENAI_API_KEY: "sk-test",
        OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
        COMFYUI_URL: "http://127.0.0.1:9",
        A1111_URL: "http://127.0.0.1:9",
        DEFAULT_PROVIDER: "comfyui",
        PROVIDER_LIMITS: JSON.stringify({ openai: { rpm: 7 }, automatic1111: { concurrency: 2 } }),
      },
    });
  });
  afterAll(() => server.close());

  test("lists exactly the enabled providers, the configured default first", async () => {
    const body = await providers(server);
    expect(body.default).toBe("comfyui");
    expect(body.providers.map((p) => p.name)).toEqual(["comfyui", "openai", "automatic1111", "placeholder"]);
  });

  test("each with its models, default model, edit support and effective limits (overrides applied)", async () => {
    const byName = new Map((await providers(server)).providers.map((p) => [p.name, p]));
    const openai = byName.get("openai")!;
    expect(openai).toMatchObject({ defaultModel: "gpt-image-1", supportsEdits: true });
    expect(openai.models).toContain("gpt-image-1");
    expect(openai.models).toContain("dall-e-3");
    // rpm overridden, concurrency kept from the adapter's default.
    expect(openai.limits).toEqual({ concurrency: 4, rpm: 7 });
    expect(byName.get("automatic1111")).toMatchObject({
      defaultModel: "default",
      models: ["default"],
      limits: { concurrency: 2, rpm: 0 },
    });
    expect(byName.get("comfyui")).toMatchObject({
      defaultModel: "sd_xl_base_1.0.safetensors",
      supportsEdits: true,
      limits: { concurrency: 1, rpm: 0 },
    });
    expect(Object.keys(openai.capabilities.models)).toEqual(openai.models);
    // Checkpoints are the box's own files: one rule for any of them.
    expect(byName.get("comfyui")?.capabilities.anyModel).toMatchObject({ input: "both", mask: false });
    for (const p of byName.values()) {
      expect(p.models).toContain(p.defaultModel);
      expect(p.limits.concurrency).toBeGreaterThanOrEqual(1);
    }
  });

  test("readable by a plain user's key; 401 without credentials", async () => {
    const created = await server.api("/api/users", {
      method: "POST",
      json: { name: "viewer", role: "user" },
    });
    expect(created.status).toBe(201);
    const { key } = (await created.json()) as { key: string };
    expect((await providers(server, key)).providers).toHaveLength(4);
    expect((await server.api("/api/providers", { key: null })).status).toBe(401);
  });
});

describe("GET /api/providers with nothing configured", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  test("only the offline placeholder, which is the default", async () => {
    const body = await providers(server);
    expect(body.default).toBe("placeholder");
    expect(body.providers).toEqual([
      expect.objectContaining({ name: "placeholder", defaultModel: "placeholder", models: ["placeholder"] }),
    ]);
  });
});
