import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ProviderError } from "../../src/providers/errors";
import {
  allOrAbort,
  downloadImage,
  ensureOk,
  httpError,
  MAX_RETRY_DELAY_MS,
  parseDuration,
  parseErrorBody,
  parseRateLimitReset,
  parseRetryAfter,
  parseSize,
  parseTextHint,
  providerFetch,
  readJson,
  retryDelayMs,
  sizeToAspectRatio,
  sleep,
  sniffMime,
  toDataUrl,
} from "../../src/providers/http";
import { TimeoutError } from "../../src/queue/errors";
import { FakeServer, HANG, json, testImage } from "../fakes/base";
import { expectFailure } from "./assert-failure";

const signal = () => new AbortController().signal;

/**
 * For requests the fake leaves hanging: their connection must not go back to the client's pool, or a later
 * test's request could be sent on it under load and hang behind the abandoned one.
 */
const NO_REUSE: RequestInit = { keepalive: false };
const h = (init: Record<string, string> = {}) => new Headers(init);

describe("parseRetryAfter", () => {
  test("retry-after-ms wins over retry-after", () => {
    expect(parseRetryAfter(h({ "retry-after-ms": "1500", "retry-after": "30" }))).toBe(1500);
  });
  test("seconds and HTTP dates", () => {
    expect(parseRetryAfter(h({ "retry-after": "7" }))).toBe(7000);
    const now = Date.parse("2025-01-01T00:00:00Z");
    expect(parseRetryAfter(h({ "retry-after": "Wed, 01 Jan 2025 00:00:30 GMT" }), now)).toBe(30_000);
    expect(parseRetryAfter(h({ "retry-after": "Tue, 31 Dec 2024 00:00:00 GMT" }), now)).toBe(0);
  });
  test("absent or junk → undefined", () => {
    expect(parseRetryAfter(h())).toBeUndefined();
    expect(parseRetryAfter(h({ "retry-after": "soon" }))).toBeUndefined();
  });
  test("Google durations", () => {
    expect(parseDuration("12s")).toBe(12_000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration(12)).toBeUndefined();
  });
});

describe("every documented form of wait (retryDelayMs)", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const wait = (status: number, headers: Record<string, string>, body: unknown = {}) =>
    retryDelayMs(
      status,
      h(headers),
      parseErrorBody(typeof body === "string" ? body : JSON.stringify(body)),
      now,
    );

  test("durations: Google's protobuf seconds, OpenAI's Go style, words", () => {
    expect(parseDuration("6m0s")).toBe(360_000);
    expect(parseDuration("1h2m3.5s")).toBe(3_723_500);
    expect(parseDuration("20ms")).toBe(20);
    expect(parseDuration("30 seconds")).toBe(30_000);
    expect(parseDuration("2 minutes")).toBe(120_000);
    expect(parseDuration("soon")).toBeUndefined();
    expect(parseDuration("30")).toBeUndefined();
  });

  test("waits written in messages", () => {
    expect(parseTextHint("Request was throttled. Your rate limit resets in ~30s.")).toBe(30_000);
    expect(parseTextHint("Request was throttled. Expected available in 5 seconds.")).toBe(5000);
    expect(parseTextHint("Rate limit reached for requests. Please try again in 6m0s.")).toBe(360_000);
    expect(parseTextHint("Quota exceeded. Please retry in 12.5s.")).toBe(12_500);
    expect(parseTextHint("Too many requests")).toBeUndefined();
  });

  test("x-ratelimit-reset* headers: Go durations, seconds, a Unix time; the longest wins", () => {
    expect(
      parseRateLimitReset(h({ "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s" })),
    ).toBe(360_000);
    expect(parseRateLimitReset(h({ "x-ratelimit-reset": "12" }), now)).toBe(12_000);
    expect(parseRateLimitReset(h({ "x-ratelimit-reset": String(now / 1000 + 45) }), now)).toBe(45_000);
    expect(parseRateLimitReset(h())).toBeUndefined();
  });

  test("the order of authority: retry-after-ms, Retry-After, rate-limit reset, RetryInfo, estimated_time, text", () => {
    const text = { detail: "Your rate limit resets in ~30s." };
    expect(wait(429, { "retry-after-ms": "1500", "retry-after": "9" }, text)).toBe(1500);
    expect(wait(429, { "retry-after": "Thu, 01 Jan 2026 00:00:20 GMT" }, text)).toBe(20_000);
    expect(wait(429, { "x-ratelimit-reset-requests": "7s" }, text)).toBe(7000);
    expect(wait(429, {}, { error: { status: "RESOURCE_EXHAUSTED", details: [{ retryDelay: "12s" }] } })).toBe(
      12_000,
    );
    expect(wait(503, {}, { error: "Model is currently loading", estimated_time: 20 })).toBe(20_000);
    expect(wait(429, {}, text)).toBe(30_000);
    expect(wait(429, {}, "Too many requests, retry after 8 seconds")).toBe(8000);
    expect(wait(429, {}, {})).toBeUndefined();
  });

  test("rate-limit reset headers say nothing about a 5xx", () => {
    expect(wait(500, { "x-ratelimit-reset-requests": "7s" })).toBeUndefined();
  });

  test("httpError turns Replicate's documented throttle into rate_limited with a 30 s wait", () => {
    const body = JSON.stringify({ detail: "Request was throttled. Your rate limit resets in ~30s." });
    const err = httpError("replicate", 429, h(), body);
    expect(err).toMatchObject({ kind: "rate_limited", retryAfterMs: 30_000 });
  });
});

describe("httpError classification", () => {
  const classify = (status: number, body: unknown = {}, headers: Record<string, string> = {}) =>
    httpError("test", status, h(headers), typeof body === "string" ? body : JSON.stringify(body));

  test.each([
    [429, "provider_rate_limited", {}, "rate_limited", true, true],
    [500, "provider_unavailable", {}, "transient", true, true],
    [502, "provider_unavailable", "<html>bad gateway</html>", "transient", true, true],
    [408, "provider_timeout", {}, "timeout", true, true],
    [
      400,
      "provider_invalid_request",
      { error: { message: "bad size", type: "invalid_request_error" } },
      "invalid_request",
      false,
      true,
    ],
    [
      422,
      "provider_invalid_request",
      { detail: [{ msg: "field required" }] },
      "invalid_request",
      false,
      true,
    ],
    [401, "provider_auth", {}, "auth", false, true],
    [403, "provider_auth", {}, "auth", false, true],
    [402, "provider_quota", {}, "quota", false, true],
    [404, "provider_model_not_found", { error: "Model x does not exist" }, "not_found", false, true],
    [
      429,
      "provider_quota",
      { error: { code: "insufficient_quota", type: "insufficient_quota" } },
      "quota",
      false,
      true,
    ],
    [429, "provider_quota", { code: "Throttling.AllocationQuota", message: "quota" }, "quota", false, true],
    [400, "content_policy", { error: { code: "content_policy_violation" } }, "content_policy", false, false],
    [400, "content_policy", { error: { code: "moderation_blocked" } }, "content_policy", false, false],
    [
      400,
      "content_policy",
      { code: "DataInspectionFailed", message: "inappropriate" },
      "content_policy",
      false,
      false,
    ],
  ] as const)("HTTP %i → %s (body %j)", (status, code, body, kind, retryable, refundable) => {
    const err = classify(status, body);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.kind).toBe(kind);
    expect(err.code).toBe(code);
    expect(err.retryable).toBe(retryable);
    expect(err.refundable).toBe(refundable);
    expect((err.details as { provider: string }).provider).toBe("test");
  });

  test("429 with a delay hint → rate_limited with retryAfterMs", () => {
    const cases: Array<[unknown, Record<string, string>, number]> = [
      [{}, { "retry-after": "3" }, 3000],
      [{}, { "retry-after-ms": "2500", "retry-after": "9" }, 2500],
      [{ error: { status: "RESOURCE_EXHAUSTED", details: [{ retryDelay: "12s" }] } }, {}, 12_000],
    ];
    for (const [body, headers, delay] of cases) {
      const err = classify(429, body, headers);
      expect(err).toMatchObject({ kind: "rate_limited", retryAfterMs: delay });
      expect(err.code).toBe("provider_rate_limited");
    }
  });

  test("delays are capped and floored", () => {
    expect((classify(429, {}, { "retry-after": "86400" }) as ProviderError).retryAfterMs).toBe(
      MAX_RETRY_DELAY_MS,
    );
    expect((classify(429, {}, { "retry-after": "0" }) as ProviderError).retryAfterMs).toBe(1000);
    const capped = httpError("t", 429, h({ "retry-after": "60" }), "", { maxDelayMs: 10_000 });
    expect((capped as ProviderError).retryAfterMs).toBe(10_000);
  });

  test("503 model loading with estimated_time → transient with retryAfterMs", () => {
    const err = classify(503, { error: "Model is currently loading", estimated_time: 20.5 });
    expect(err).toMatchObject({ kind: "transient", retryAfterMs: 20_500 });
    expect(err.code).toBe("provider_unavailable");
  });

  test("hintMs is used when no header or body gives a delay", () => {
    const err = httpError("t", 429, h(), "{}", { hintMs: 4000 });
    expect((err as ProviderError).retryAfterMs).toBe(4000);
  });

  test("the provider's message ends up in the error", () => {
    const err = classify(400, { error: { message: "Invalid value for 'size'" } });
    expect(err.message).toBe("test: HTTP 400: Invalid value for 'size'");
  });
});

describe("providerFetch / ensureOk against a real server", () => {
  let fake: FakeServer;
  beforeAll(async () => {
    fake = await new FakeServer((req) => (req.path === "/ok" ? json({ ok: true }) : undefined)).start();
  });
  afterAll(() => fake.stop());

  test("passes headers and body through", async () => {
    const res = await providerFetch(
      "t",
      `${fake.url}/ok`,
      { method: "POST", headers: { "content-type": "application/json", "x-k": "v" }, body: '{"a":1}' },
      { signal: signal() },
    );
    expect(await readJson("t", res)).toEqual({ ok: true });
    const rec = fake.requests.at(-1);
    expect(rec?.headers.get("x-k")).toBe("v");
    expect(rec?.json).toEqual({ a: 1 });
  });

  test("a hang hits the per-request timeout → provider_timeout", async () => {
    fake.script(HANG);
    const started = performance.now();
    await expectFailure(
      providerFetch("t", `${fake.url}/ok`, NO_REUSE, { signal: signal(), timeoutMs: 150 }),
      {
        kind: "timeout",
        code: "provider_timeout",
      },
    );
    expect(performance.now() - started).toBeLessThan(2000);
  });

  test("a body that stalls after the headers also hits the timeout", async () => {
    fake.script(() => {
      const body = new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"partial":'));
        },
      });
      return new Response(body, { headers: { "content-type": "application/json" } });
    });
    const res = await providerFetch("t", `${fake.url}/ok`, NO_REUSE, { signal: signal(), timeoutMs: 150 });
    await expectFailure(readJson("t", res), { kind: "timeout", code: "provider_timeout" });
  });

  test("the caller's abort propagates its own reason, not a retryable error", async () => {
    fake.script(HANG);
    const ac = new AbortController();
    const reason = new TimeoutError(100);
    setTimeout(() => ac.abort(reason), 50);
    const err = await providerFetch("t", `${fake.url}/ok`, NO_REUSE, { signal: ac.signal }).catch(
      (e: unknown) => e,
    );
    expect(err).toBe(reason);
  });

  test("an already aborted signal never sends the request", async () => {
    const before = fake.requests.length;
    const ac = new AbortController();
    ac.abort(new Error("gone"));
    await expect(providerFetch("t", `${fake.url}/ok`, {}, { signal: ac.signal })).rejects.toThrow("gone");
    expect(fake.requests.length).toBe(before);
  });

  test("connection refused → provider_network", async () => {
    const dead = await new FakeServer().start();
    const url = dead.url;
    await dead.stop();
    await expectFailure(providerFetch("t", url, {}, { signal: signal() }), {
      kind: "transient",
      code: "provider_network",
    });
  });

  test("ensureOk: provider hook first, shared rules otherwise", async () => {
    fake.script(json({ error: "special" }, 418)).script(json({ error: "x" }, 503, { "retry-after": "2" }));
    const hook = () => new ProviderError("rejected", "hooked", { code: "teapot" });
    const r1 = await providerFetch("t", `${fake.url}/ok`, {}, { signal: signal() });
    await expectFailure(ensureOk("t", r1, { classify: hook }), { kind: "rejected", code: "teapot" });
    const r2 = await providerFetch("t", `${fake.url}/ok`, {}, { signal: signal() });
    await expectFailure(ensureOk("t", r2, { classify: () => undefined }), {
      kind: "transient",
      code: "provider_unavailable",
      retryAfterMs: 2000,
    });
  });

  test("readJson on non-JSON → provider_bad_response", async () => {
    fake.script(new Response("<html>", { status: 200 }));
    const res = await providerFetch("t", `${fake.url}/ok`, {}, { signal: signal() });
    await expectFailure(readJson("t", res), { kind: "bad_response", code: "provider_bad_response" });
  });
});

describe("downloadImage", () => {
  let fake: FakeServer;
  let png: Uint8Array<ArrayBuffer>;
  beforeAll(async () => {
    png = await testImage({ format: "png", width: 32, height: 32 });
    fake = await new FakeServer((req) => {
      if (req.path === "/img")
        return new Response(png, { headers: { "content-type": "application/octet-stream" } });
      if (req.path === "/stream") {
        // No content-length: the cap must trip while streaming.
        const chunk = new Uint8Array(64 * 1024);
        let sent = 0;
        const body = new ReadableStream({
          pull(c) {
            if (sent++ >= 20) c.close();
            else c.enqueue(chunk);
          },
        });
        return new Response(body, { headers: { "content-type": "image/png" } });
      }
      if (req.path === "/text")
        return new Response("not an image", { headers: { "content-type": "text/plain" } });
      return undefined;
    }).start();
  });
  afterAll(() => fake.stop());

  test("downloads and sniffs a vague content-type", async () => {
    const img = await downloadImage(`${fake.url}/img`, { signal: signal() });
    expect(img.mime).toBe("image/png");
    expect(img.bytes).toEqual(png);
  });

  test("declared length over the cap → provider_output_too_large", async () => {
    await expectFailure(downloadImage(`${fake.url}/img`, { signal: signal(), maxBytes: 10, provider: "p" }), {
      kind: "rejected",
      code: "provider_output_too_large",
      refundable: true,
    });
  });

  test("streamed body over the cap is cut off", async () => {
    await expectFailure(downloadImage(`${fake.url}/stream`, { signal: signal(), maxBytes: 100_000 }), {
      kind: "rejected",
      code: "provider_output_too_large",
    });
  });

  test("not an image → provider_bad_response; gone → provider_output_missing", async () => {
    await expectFailure(downloadImage(`${fake.url}/text`, { signal: signal() }), {
      kind: "bad_response",
      code: "provider_bad_response",
    });
    await expectFailure(downloadImage(`${fake.url}/missing`, { signal: signal() }), {
      kind: "not_found",
      code: "provider_output_missing",
    });
  });

  test("a hang is cut by timeoutMs", async () => {
    fake.script(HANG);
    await expectFailure(downloadImage(`${fake.url}/img`, { signal: signal(), timeoutMs: 150 }), {
      kind: "timeout",
      code: "provider_timeout",
    });
  });

  test("data: URLs are decoded locally", async () => {
    const img = await downloadImage(toDataUrl({ bytes: png, mime: "image/png" }), { signal: signal() });
    expect(img).toEqual({ bytes: png, mime: "image/png" });
  });
});

describe("media helpers", () => {
  test("sniffMime recognises real files", async () => {
    for (const format of ["png", "jpeg", "webp"] as const) {
      expect(sniffMime(await testImage({ format }))).toBe(`image/${format}`);
    }
    expect(sniffMime(new TextEncoder().encode("GIF89a......"))).toBe("image/gif");
    expect(sniffMime(new TextEncoder().encode("hello"))).toBeUndefined();
  });

  test("sizes and aspect ratios", () => {
    expect(parseSize("1536x1024")).toEqual({ width: 1536, height: 1024 });
    expect(sizeToAspectRatio("1536x1024")).toBe("3:2");
    expect(sizeToAspectRatio("1024x1024")).toBe("1:1");
    expect(sizeToAspectRatio("1920x1080", ["1:1", "4:3", "16:9"])).toBe("16:9");
    expect(sizeToAspectRatio("1000x1900", ["1:1", "3:4", "9:16"])).toBe("9:16");
    expect(() => parseSize("big")).toThrow(ProviderError);
    expect(() => parseSize("0x10")).toThrow(ProviderError);
  });
});

describe("waiting", () => {
  test("sleep rejects with the abort reason", async () => {
    const ac = new AbortController();
    const reason = new Error("stop");
    setTimeout(() => ac.abort(reason), 10);
    expect(await sleep(10_000, ac.signal).catch((e: unknown) => e)).toBe(reason);
  });

  test("allOrAbort aborts siblings on the first failure", async () => {
    const aborted: number[] = [];
    const boom = new ProviderError("transient", "boom");
    const run = allOrAbort(3, signal(), async (i, s) => {
      if (i === 0) throw boom;
      await sleep(5_000, s).catch((e: unknown) => {
        aborted.push(i);
        throw e;
      });
    });
    expect(await run.catch((e: unknown) => e)).toBe(boom);
    await Bun.sleep(0);
    expect(aborted.sort()).toEqual([1, 2]);
  });
});
