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
  // Fonts of its own, not the thread's shared ones: test files run in one process, and a card of another
  // script rendered earlier leaves fallback fonts in the shared set, which move satori's line boxes.
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

  test("fonts added for a new script empty the cache, and both cards still match uncached renders", async () => {
    // A card sharing no text with the poll card, so none of its runs can be served from the Japanese one.
    const japanese = { title: "好きな季節はどれですか？", subtitle: "毎年の調査" };
    await svgOf(renderer, poll);
    const cached = glyphCacheStats();
    await svgOf(renderer, poll);
    const runs = glyphCacheStats().hits - cached.hits;
    expect(glyphCacheStats().misses).toBe(cached.misses);

    // The reference renders the same cards in the same order: satori's line boxes depend on every font its
    // loader holds (the emoji's line takes the last one's metrics), not only on the card.
    const reference = freshRenderer();
    expect(await svgOf(renderer, japanese, "og")).toBe(await svgOf(reference, japanese, "og"));
    const before = glyphCacheStats();
    const latin = await svgOf(renderer, poll);
    // The Noto Sans JP slices were added to satori's loader: every run of the Latin card was drawn anew.
    expect(glyphCacheStats().hits).toBe(before.hits);
    expect(glyphCacheStats().misses - before.misses).toBe(runs);
    expect(latin).toBe(await svgOf(reference, poll));
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
