import { describe, expect, test } from "bun:test";
import sharp from "sharp";
import { createPlaceholderProvider } from "../../src/providers/placeholder";
import type { GenerateRequest } from "../../src/providers/types";
import { testImage } from "../fakes/base";
import { expectFailure } from "./assert-failure";

const ctx = () => ({ signal: new AbortController().signal });
const req = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt: "a red fox in the snow",
  size: "256x192",
  n: 1,
  ...over,
});

describe("placeholder provider", () => {
  const provider = createPlaceholderProvider();

  test("same prompt and seed → identical bytes; a different seed or prompt → different bytes", async () => {
    const [a] = await provider.generate(req({ seed: 42 }), ctx());
    const [b] = await provider.generate(req({ seed: 42 }), ctx());
    const [c] = await provider.generate(req({ seed: 43 }), ctx());
    const [d] = await provider.generate(req({ seed: 42, prompt: "a blue fox" }), ctx());
    expect(a?.bytes).toEqual(b?.bytes as Uint8Array);
    expect(a?.bytes).not.toEqual(c?.bytes as Uint8Array);
    expect(a?.bytes).not.toEqual(d?.bytes as Uint8Array);
    expect(a?.seed).toBe(42);
  });

  test("without a seed the prompt picks one, so results are still reproducible", async () => {
    const [a] = await provider.generate(req(), ctx());
    const [b] = await provider.generate(req(), ctx());
    expect(a?.seed).toBeNumber();
    expect(a?.bytes).toEqual(b?.bytes as Uint8Array);
  });

  test("produces n PNGs of the requested size with consecutive seeds", async () => {
    const images = await provider.generate(req({ n: 3, seed: 7, size: "320x200" }), ctx());
    expect(images.map((i) => i.seed)).toEqual([7, 8, 9]);
    for (const img of images) {
      expect(img.mime).toBe("image/png");
      const meta = await sharp(img.bytes).metadata();
      expect({ w: meta.width, h: meta.height, f: meta.format }).toEqual({ w: 320, h: 200, f: "png" });
    }
    expect(images[0]?.bytes).not.toEqual(images[1]?.bytes as Uint8Array);
  });

  test("an edit uses the input image as background", async () => {
    const input = await testImage({ width: 64, height: 64, color: "#00ff00" });
    const [img] = await provider.generate(
      req({ images: [{ bytes: input, mime: "image/png" }], seed: 1 }),
      ctx(),
    );
    const { dominant } = await sharp(img?.bytes).stats();
    // Mostly the green input under a light dark veil, not the generated gradient.
    expect(dominant.g).toBeGreaterThan(dominant.r + 50);
  });

  test("[unsafe] → content_policy, not refundable", async () => {
    await expectFailure(provider.generate(req({ prompt: "draw [unsafe] things" }), ctx()), {
      kind: "content_policy",
      code: "content_policy",
      retryable: false,
      refundable: false,
    });
  });

  test("[fail] always fails retryably; [fail-once] only the first time", async () => {
    for (let i = 0; i < 2; i++) {
      await expectFailure(provider.generate(req({ prompt: "x [fail]" }), ctx()), {
        kind: "transient",
        code: "provider_unavailable",
        retryable: true,
      });
    }
    const p = createPlaceholderProvider();
    await expectFailure(p.generate(req({ prompt: "y [fail-once]" }), ctx()), {
      kind: "transient",
      code: "provider_unavailable",
    });
    expect(await p.generate(req({ prompt: "y [fail-once]" }), ctx())).toHaveLength(1);
  });

  test("[slow] and latencyMs wait, and the wait honours the abort signal", async () => {
    const slow = createPlaceholderProvider({ latencyMs: 40, slowMs: 10_000 });
    const t0 = performance.now();
    await slow.generate(req(), ctx());
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
    const ac = new AbortController();
    const reason = new Error("cancelled");
    setTimeout(() => ac.abort(reason), 50);
    const t1 = performance.now();
    expect(
      await slow.generate(req({ prompt: "[slow] cat" }), { signal: ac.signal }).catch((e: unknown) => e),
    ).toBe(reason);
    expect(performance.now() - t1).toBeLessThan(1000);
  });

  test("rejects bad and oversized sizes as invalid requests", async () => {
    for (const size of ["huge", "9000x9000"]) {
      await expectFailure(provider.generate(req({ size }), ctx()), {
        kind: "invalid_request",
        code: "provider_invalid_request",
        refundable: true,
      });
    }
  });

  test("a 1024x1024 image renders fast", async () => {
    const t0 = performance.now();
    await provider.generate(req({ size: "1024x1024", seed: 5 }), ctx());
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
