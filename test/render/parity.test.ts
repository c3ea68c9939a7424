import { describe, expect, test } from "bun:test";
import sharp from "sharp";
import { templates } from "../../src/render/templates";
import { keep, renderers } from "./engines";

const engines = renderers();

/** A 256 px red square as a data URL: what the avatar resolver hands the workers. */
const avatar = `data:image/png;base64,${(
  await sharp({ create: { width: 128, height: 128, channels: 3, background: "#dc1414" } })
    .png()
    .toBuffer()
).toString("base64")}`;

const poll = templates.poll.example;
const og = templates.og.example;

/** Every template's example and the variants that exercise its other paths. */
const FIXTURES: Record<string, { template: "poll" | "og"; data: unknown }> = {
  "poll-example": { template: "poll", data: poll },
  "poll-dark-avatar": {
    template: "poll",
    data: {
      ...poll,
      theme: { mode: "dark", accent: "#e8590c" },
      creator: { name: "Ada", avatarUrl: avatar },
    },
  },
  "poll-ten-options": {
    template: "poll",
    data: {
      ...poll,
      question:
        "Which of these very long options would you choose if you had to pick only one of them today?",
      options: Array.from({ length: 10 }, (_, i) => ({
        label: `Option ${i + 1} with a longer label`,
        votes: i * 7,
      })),
    },
  },
  "poll-no-votes": {
    template: "poll",
    data: { ...poll, options: poll.options.map((o) => ({ ...o, votes: 0 })) },
  },
  "poll-scripts": {
    template: "poll",
    data: {
      ...poll,
      question: "好きな季節は？ 你好 안녕 🌸",
      options: [
        { label: "ما هو فصلك", votes: 3 },
        { label: "מהי העונה", votes: 2 },
        { label: "आपका पसंदीदा", votes: 1 },
        { label: "คุณชอบฤดู", votes: 1 },
      ],
    },
  },
  "og-example": { template: "og", data: og },
  "og-dark-minimal": { template: "og", data: { title: "Hello", theme: { mode: "dark" } } },
};

/**
 * How far the two engines' pixels are apart: the mean absolute difference per channel (0-255), and the share
 * of pixels that differ by more than 96 on some channel after a 3x3 blur of both, so that antialiasing and
 * sub-pixel glyph placement (which the engines do differently) count less than a missing or moved shape.
 */
async function distance(a: Uint8Array, b: Uint8Array) {
  const raw = (png: Uint8Array) => sharp(png).removeAlpha().raw().toBuffer();
  const blurred = (png: Uint8Array) => sharp(png).removeAlpha().blur(1).raw().toBuffer();
  const [ra, rb, ba, bb] = await Promise.all([raw(a), raw(b), blurred(a), blurred(b)]);
  let sum = 0;
  for (let i = 0; i < ra.length; i++) sum += Math.abs(ra[i]! - rb[i]!);
  let moved = 0;
  for (let i = 0; i < ba.length; i += 3) {
    const d = Math.max(
      Math.abs(ba[i]! - bb[i]!),
      Math.abs(ba[i + 1]! - bb[i + 1]!),
      Math.abs(ba[i + 2]! - bb[i + 2]!),
    );
    if (d > 96) moved++;
  }
  return { mean: sum / ra.length, moved: moved / (ba.length / 3) };
}

// The bounds, from these fixtures: Latin cards differ by a mean of 1.0-1.7 levels per channel and ≤ 0.2 % of
// pixels after the blur; large bold CJK glyphs, rasterised with different antialiasing, by 4.5 and 1.7 %. A
// missing line of question text alone costs ~8 levels and ~3.5 %.
const MAX_MEAN = 6;
const MAX_MOVED = 0.025;

describe("satori and takumi draw the same cards", () => {
  for (const [name, { template, data }] of Object.entries(FIXTURES)) {
    test(name, async () => {
      const [a, b] = await Promise.all([
        engines.satori.render(template, data),
        engines.takumi.render(template, data),
      ]);
      keep(`parity-${name}-satori`, a.png);
      keep(`parity-${name}-takumi`, b.png);
      expect([b.width, b.height]).toEqual([a.width, a.height]);
      const d = await distance(a.png, b.png);
      expect(d.mean).toBeLessThan(MAX_MEAN);
      expect(d.moved).toBeLessThan(MAX_MOVED);
    });
  }
});
