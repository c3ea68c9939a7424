/**
 * `easel cards render <template> <data.json> -o out.png`: renders a card offline, as an operator would run it
 * (a child process, no server).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { createCardRenderer } from "../../src/render/render";
import { templates } from "../../src/render/templates";
import { expectExit, runEasel, tempDir } from "../helpers";

let tmp: ReturnType<typeof tempDir>;
let dataDir: string;
beforeAll(() => {
  tmp = tempDir("easel-cards-cli-");
  dataDir = join(tmp.dir, "data");
});
afterAll(() => tmp.cleanup());

function writeJson(name: string, value: unknown): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, JSON.stringify(value));
  return path;
}

/** Distinct colours in a coarse sample: a blank image has one or two. */
async function colourCount(path: string): Promise<number> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  const seen = new Set<string>();
  for (let i = 0; i < data.length; i += info.channels * 97)
    seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
  return seen.size;
}

describe("easel cards render", () => {
  test("CARD_RENDERER=takumi: the file is what the takumi engine draws", async () => {
    const data = writeJson("poll-takumi.json", templates.poll.example);
    const out = join(tmp.dir, "poll-takumi.png");
    const run = await runEasel(dataDir, ["cards", "render", "poll", data, "-o", out], {
      CARD_RENDERER: "takumi",
    });
    expectExit(run, 0);
    const expected = await createCardRenderer({ engine: "takumi" }).render("poll", templates.poll.example);
    expect(Buffer.from(await Bun.file(out).arrayBuffer()).equals(Buffer.from(expected.png))).toBe(true);
  });

  test("poll: writes a 1200x800 PNG that is not blank", async () => {
    const data = writeJson("poll.json", {
      question: "Which topping wins?",
      creator: { name: "Ada Lovelace", handle: "ada" },
      options: [
        { label: "Mushrooms", votes: 3 },
        { label: "Pineapple", votes: 1 },
      ],
    });
    const out = join(tmp.dir, "poll.png");
    const run = await runEasel(dataDir, ["cards", "render", "poll", data, "-o", out]);
    expectExit(run, 0);
    expect(run.stdout).toContain(`wrote ${out} (1200x800`);
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["png", 1200, 800]);
    expect(await colourCount(out)).toBeGreaterThan(5);
  }, 30_000);

  test("og: the template's example data gives a 1200x630 PNG", async () => {
    const out = join(tmp.dir, "og.png");
    const run = await runEasel(dataDir, [
      "cards",
      "render",
      "og",
      writeJson("og.json", templates.og.example),
      "--out",
      out,
    ]);
    expectExit(run, 0);
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["png", 1200, 630]);
  }, 30_000);

  test("invalid data: exit 1 naming the field, and no file written", async () => {
    const out = join(tmp.dir, "bad.png");
    const data = writeJson("bad.json", {
      question: "Only one option?",
      creator: { name: "Ada Lovelace", handle: "ada" },
      options: [{ label: "Yes", votes: 1 }],
    });
    const run = await runEasel(dataDir, ["cards", "render", "poll", data, "-o", out]);
    expectExit(run, 1);
    expect(run.stderr).toContain("invalid data for poll: options");
    expect(existsSync(out)).toBe(false);
  }, 30_000);

  test("a missing -o is a usage error and writes nothing", async () => {
    const before = readdirSync(tmp.dir).length;
    const run = await runEasel(dataDir, ["cards", "render", "poll", writeJson("p.json", {})]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("usage: easel cards render <template> <data.json> -o <out.png>");
    expect(readdirSync(tmp.dir).length).toBe(before + 1); // only p.json
  }, 30_000);
});
