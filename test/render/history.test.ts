import { afterAll, describe, expect, test } from "bun:test";
import { ENGINES } from "../../src/render/engine";
import { loadFonts } from "../../src/render/fonts";
import { RenderPool } from "../../src/render/pool";
import { createCardRenderer } from "../../src/render/render";
import { templates } from "../../src/render/templates";
import { keep } from "./engines";
import { decode } from "./pixels";

/**
 * A card looks the same whatever its renderer drew before: a worker renders cards of every script in turn,
 * and a poll shared in a feed must not change its look because a Japanese card came through that worker.
 */

const poll = templates.poll.example;
const japanese = { ...poll, question: "好きな季節はどれですか？ 🌸", creator: { name: "山田 花子" } };
const arabic = { title: "ما هو فصلك المفضل؟", subtitle: "שלום 👋" };
const hash = (png: Uint8Array) => Bun.hash(png).toString(16);

describe.each(ENGINES)("a card's look depends on its data only (%s)", (engine) => {
  // Fonts of their own: satori shares font loaders between renderers with the same font files, and the
  // renderers of other test files in this process render other scripts.
  const fresh = () => createCardRenderer({ engine, fonts: loadFonts() });

  test("the poll card renders byte for byte the same before and after Japanese and Arabic cards", async () => {
    const renderer = fresh();
    const before = (await renderer.render("poll", poll)).png;
    const jp = (await renderer.render("poll", japanese)).png;
    await renderer.render("og", arabic);
    const after = (await renderer.render("poll", poll)).png;
    keep(`${engine}-history-poll-before`, before);
    keep(`${engine}-history-japanese`, jp);
    keep(`${engine}-history-poll-after`, after);
    expect(hash(after)).toBe(hash(before));
    // ...and the Japanese card was drawn with its glyphs, so the fallback fonts were in use in between.
    expect(hash(jp)).not.toBe(hash(before));
  });

  test("a Japanese card's Han characters keep their Japanese shapes after a Chinese card", async () => {
    const card = { title: "学生です 直角 骨", subtitle: "今日の質問" };
    const alone = (await fresh().render("og", card)).png;
    const renderer = fresh();
    // Simplified Chinese text with the same Han characters: their Chinese shapes are loaded first.
    await renderer.render("og", { title: "学生 直角 骨", subtitle: "今天的问题" });
    const afterChinese = (await renderer.render("og", card)).png;
    keep(`${engine}-history-han-alone`, alone);
    keep(`${engine}-history-han-after-chinese`, afterChinese);
    expect(hash(afterChinese)).toBe(hash(alone));
  });

  test("the same card in another renderer that saw other scripts first is the same image", async () => {
    const first = fresh();
    const second = fresh();
    await second.render("og", arabic);
    await second.render("poll", { ...poll, question: "คุณชอบฤดูไหนมากที่สุด 안녕" });
    const [a, b] = await Promise.all([first.render("poll", japanese), second.render("poll", japanese)]);
    expect(hash(b.png)).toBe(hash(a.png));
  });
});

describe("through a render worker", () => {
  const pools: RenderPool[] = [];
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
  });

  test.each(ENGINES)(
    "%s: one worker renders the poll card the same before and after a Japanese card",
    async (engine) => {
      const pool = new RenderPool({ size: 1, engine });
      pools.push(pool);
      const before = await pool.render("poll", poll);
      await pool.render("poll", japanese);
      const after = await pool.render("poll", poll);
      expect(hash(after.png)).toBe(hash(before.png));
      const img = await decode(after.png);
      expect([img.width, img.height]).toEqual([1200, 800]);
    },
  );
});
