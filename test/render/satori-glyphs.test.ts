import { describe, expect, test } from "bun:test";
import { loadFonts } from "../../src/render/fonts";
import { createCardRenderer } from "../../src/render/render";
import { glyphCacheStats } from "../../src/render/satori-glyphs";
import { templates } from "../../src/render/templates";

const poll = templates.poll.example;

function withVotes(offset: number) {
  return { ...poll, options: poll.options.map((o) => ({ ...o, votes: o.votes + offset })) };
}

/** A renderer with its own copy of the fonts: satori gives it a loader of its own, whose cache starts empty. */
function freshRenderer() {
  return createCardRenderer({ fonts: loadFonts() });
}

async function svgOf(
  renderer: ReturnType<typeof createCardRenderer>,
  data: unknown,
  template: "poll" | "og" = "poll",
): Promise<string> {
  return (await renderer.svg(template, data)).svg;
}

describe("satori's path data of repeated text", () => {
  // Fonts of its own, not the thread's shared ones: satori shares a loader (and so a cache) between renderers
  // with the same font files, and other tests in this process render with those.
  const renderer = freshRenderer();

  test("a re-rendered card takes every text run from the cache and its SVG stays byte for byte the same", async () => {
    const first = await svgOf(renderer, poll);
    await svgOf(renderer, poll);
    const before = glyphCacheStats();
    const again = await svgOf(renderer, poll);
    const after = glyphCacheStats();
    expect(again).toBe(first);
    expect(after.hits - before.hits).toBeGreaterThan(10);
    expect(after.misses).toBe(before.misses);
  });

  test("when the votes change only their runs are drawn again, as an uncached render draws them", async () => {
    await svgOf(renderer, withVotes(0));
    const before = glyphCacheStats();
    const cached = await svgOf(renderer, withVotes(5));
    const after = glyphCacheStats();
    // Counts, percentages and the total changed; the question, names, labels and footer did not.
    expect(after.misses - before.misses).toBeGreaterThan(0);
    expect(after.hits - before.hits).toBeGreaterThan(after.misses - before.misses);
    expect(cached).toBe(await svgOf(freshRenderer(), withVotes(5)));
  });

  test("a card of another script gets fonts of its own: the Latin card's runs stay cached, both match uncached renders", async () => {
    // A card sharing no text with the poll card, so none of its runs can be served from the Japanese one.
    const japanese = { title: "好きな季節はどれですか？", subtitle: "毎年の調査" };
    await svgOf(renderer, poll);
    const before = glyphCacheStats();
    expect(await svgOf(renderer, japanese, "og")).toBe(await svgOf(freshRenderer(), japanese, "og"));
    // The Japanese card's font list (Inter and the Noto Sans JP slices) has a loader and a cache of its own.
    expect(glyphCacheStats().misses).toBeGreaterThan(before.misses);
    const afterJapanese = glyphCacheStats();
    const latin = await svgOf(renderer, poll);
    expect(glyphCacheStats().misses).toBe(afterJapanese.misses);
    expect(glyphCacheStats().hits - afterJapanese.hits).toBeGreaterThan(10);
    expect(latin).toBe(await svgOf(freshRenderer(), poll));
  });

  test("a card makes one font engine per distinct font, size and line height, and no engine outlives its card", async () => {
    await svgOf(renderer, poll);
    const before = glyphCacheStats();
    const svg = await svgOf(renderer, poll);
    const first = glyphCacheStats();
    const asked = first.enginesAsked - before.enginesAsked;
    const made = first.enginesMade - before.enginesMade;
    // Satori asks once per text element and more; the poll card uses a handful of sizes and weights.
    expect(made).toBeGreaterThan(0);
    expect(asked).toBeGreaterThan(2 * made);
    await svgOf(renderer, poll);
    // The next card makes its own again: an engine's memory of which font drew what is the card's alone.
    expect(glyphCacheStats().enginesMade - first.enginesMade).toBe(made);
    expect(svg).toBe(await svgOf(freshRenderer(), poll));
  });

  test("renderers whose first renders overlap both get the cache, and WeakMap's own set is back after", async () => {
    const ownSet = WeakMap.prototype.set;
    const [a, b] = [freshRenderer(), freshRenderer()];
    await Promise.all([svgOf(a, poll), svgOf(b, withVotes(1))]);
    expect(WeakMap.prototype.set).toBe(ownSet);
    await Promise.all([svgOf(a, poll), svgOf(b, withVotes(1))]);
    const before = glyphCacheStats();
    await Promise.all([svgOf(a, poll), svgOf(b, withVotes(1))]);
    const after = glyphCacheStats();
    expect(after.misses).toBe(before.misses);
    expect(after.hits - before.hits).toBeGreaterThan(20);
  });
});
