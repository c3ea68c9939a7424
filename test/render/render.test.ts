import { describe, expect, test } from "bun:test";
import { ENGINES } from "../../src/render/engine";
import { createCardRenderer } from "../../src/render/render";
import { templates } from "../../src/render/templates";
import { palette } from "../../src/render/templates/theme";
import { colourful, count, decode, near, type Pixels } from "./pixels";

// One renderer for the file: fonts load once, as in a worker.
const renderer = createCardRenderer();
const light = palette(undefined);

function poll(overrides: Record<string, unknown> = {}) {
  return { ...templates.poll.example, footer: undefined, highlightLeader: false, ...overrides };
}

async function renderPoll(overrides: Record<string, unknown> = {}): Promise<Pixels> {
  const card = await renderer.render("poll", poll(overrides));
  expect([card.width, card.height]).toEqual([1200, 800]);
  return decode(card.png);
}

/** Vertical runs of `colour` in column x: where the bars are. */
function runsInColumn(img: Pixels, x: number, colour: string): Array<{ start: number; end: number }> {
  const runs: Array<{ start: number; end: number }> = [];
  for (let y = 0; y < img.height; y++) {
    if (!near(img.at(x, y), colour)) continue;
    const last = runs[runs.length - 1];
    if (last && last.end === y) last.end = y + 1;
    else runs.push({ start: y, end: y + 1 });
  }
  return runs.filter((r) => r.end - r.start > 10);
}

/** Length of the run of `colour` in row y through x. */
function runThrough(img: Pixels, x: number, y: number, colour: string): number {
  let start = x;
  let end = x;
  while (start > 0 && near(img.at(start - 1, y), colour, 6)) start--;
  while (end < img.width && near(img.at(end, y), colour, 6)) end++;
  return end - start;
}

const QUESTION_BAND = { x0: 0, y0: 130, x1: 1200, y1: 330 };

describe("renderCard", () => {
  test("renders PNGs of the template's size that are not blank", async () => {
    for (const name of ["poll", "og"] as const) {
      const card = await renderer.render(name, templates[name].example);
      expect(Array.from(card.png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      const img = await decode(card.png);
      expect([img.width, img.height]).toEqual([templates[name].width, templates[name].height]);
      const dark = count(img, { x0: 0, y0: 0, x1: img.width, y1: img.height }, (p) => p[0]! < 80);
      expect(dark).toBeGreaterThan(2000); // text was drawn
    }
  });

  test("every encoder produces the same pixels", async () => {
    const data = poll();
    const ref = await decode((await createCardRenderer({ encoder: "resvg" }).render("poll", data)).png);
    for (const encoder of ["sharp", "zlib"] as const) {
      const img = await decode((await createCardRenderer({ encoder }).render("poll", data)).png);
      for (const [x, y] of [
        [0, 0],
        [92, 80],
        [300, 200],
        [600, 500],
        [1199, 799],
      ] as const) {
        expect(img.at(x, y)).toEqual(ref.at(x, y));
      }
    }
  });

  test("a 75% bar is three times as long as a 25% bar", async () => {
    const img = await renderPoll({
      options: [
        { label: "Yes", votes: 3 },
        { label: "No", votes: 1 },
      ],
    });
    const bars = runsInColumn(img, 70, light.fill);
    expect(bars).toHaveLength(2);
    // Near each bar's bottom edge: below the label's glyphs, above the rounded corner's curve.
    const [long, short] = bars.map((bar) => runThrough(img, 70, bar.end - 6, light.fill));
    const ratio = long! / short!;
    expect(ratio).toBeGreaterThan(2.85);
    expect(ratio).toBeLessThan(3.15);
    expect(long!).toBeGreaterThan(0.7 * 1072);
  });

  test("the leader's bar uses the accent tint", async () => {
    const img = await renderPoll({ highlightLeader: true, theme: { accent: "#e8590c" } });
    expect(runsInColumn(img, 70, palette({ accent: "#e8590c" }).leaderFill)).toHaveLength(1);
  });

  test("zero votes draw empty bars and 0%", async () => {
    const img = await renderPoll({
      options: [
        { label: "Tabs", votes: 0 },
        { label: "Spaces", votes: 0 },
      ],
    });
    expect(runsInColumn(img, 70, light.fill)).toHaveLength(0);
    expect(runsInColumn(img, 70, light.track)).toHaveLength(2);
  });

  test("a 300-character question and long labels stay inside the card", async () => {
    const word = "Supercalifragilisticexpialidocious";
    const img = await renderPoll({
      question: `${"Which of these very long options would you choose if you had to? ".repeat(5)}`.slice(
        0,
        300,
      ),
      creator: { name: "N".repeat(80), handle: "h".repeat(40) },
      options: Array.from({ length: 10 }, (_, i) => ({
        label: i === 0 ? word.repeat(5) : `Option ${i} ${"with a long description ".repeat(8)}`.slice(0, 200),
        votes: 1e9 + i,
      })),
      footer: "F".repeat(100),
    });
    const isBackground = (p: number[]) => near(p, light.background);
    // Padding bands on every side are untouched: nothing overflowed.
    const bands = [
      { x0: 0, y0: 0, x1: 1200, y1: 50 },
      { x0: 0, y0: 752, x1: 1200, y1: 800 },
      { x0: 0, y0: 0, x1: 60, y1: 800 },
      { x0: 1140, y0: 0, x1: 1200, y1: 800 },
    ];
    for (const band of bands) {
      const area = (band.x1 - band.x0) * (band.y1 - band.y0);
      expect(count(img, band, isBackground)).toBe(area);
    }
    // The footer row still shows its total, in the text colour.
    const footerText = count(img, { x0: 64, y0: 718, x1: 400, y1: 748 }, (p) => near(p, light.text, 10));
    expect(footerText).toBeGreaterThan(50);
  });

  test.each(ENGINES)("emoji render as colour images (%s)", async (engine) => {
    const r = engine === "satori" ? renderer : createCardRenderer({ engine });
    const render = async (question: string) => decode((await r.render("poll", poll({ question }))).png);
    const plain = await render("Pizza or pasta?");
    const emoji = await render("Pizza 🍕 or pasta 🍝? 👩‍👩‍👧 🇯🇵");
    expect(count(plain, QUESTION_BAND, colourful)).toBe(0);
    expect(count(emoji, QUESTION_BAND, colourful)).toBeGreaterThan(600);
  });

  test("Cyrillic, Greek and Vietnamese render as real glyphs", async () => {
    // A missing glyph draws the font's .notdef box, the same for every character; so a string of real glyphs
    // differs from one of missing glyphs of the same length, and Cyrillic "о" matches Latin "o" exactly.
    const missing = await renderPoll({ question: "ሀሁሂሃሄህ" });
    for (const text of ["Привет", "Ελληνα", "Việt N"]) {
      const img = await renderPoll({ question: text });
      let differ = 0;
      for (let y = QUESTION_BAND.y0; y < QUESTION_BAND.y1; y += 2) {
        for (let x = 64; x < 700; x += 2) if (img.at(x, y)[0] !== missing.at(x, y)[0]) differ++;
      }
      expect(differ).toBeGreaterThan(100);
    }
    const cyrillic = await renderPoll({ question: "Сосор" });
    const latin = await renderPoll({ question: "Cocop" });
    for (let y = QUESTION_BAND.y0; y < QUESTION_BAND.y1; y += 3) {
      for (let x = 64; x < 500; x += 3) expect(cyrillic.at(x, y)).toEqual(latin.at(x, y));
    }
  });

  test("scripts without a font do not fail the render", async () => {
    const img = await renderPoll({
      question: "ᚠᛇᚻ ᛒᛦᚦ 𓀀𓀁 ꦲꦏ ⵜⴰⵎⴰⵣⵉⵖⵜ",
      options: [
        { label: "𒀀𒀁 cuneiform", votes: 1 },
        { label: "ⴰⵣⵓⵍ tifinagh", votes: 2 },
      ],
      creator: { name: "ꓮꓲꓢ" },
    });
    expect(img.width).toBe(1200);
  });

  test("remote avatar URLs are never drawn (the worker must not fetch)", async () => {
    const svg = await renderer.svg(
      "poll",
      poll({ creator: { name: "Ada", avatarUrl: "https://example.com/a.png" } }),
    );
    expect(svg.svg).not.toContain("example.com");
  });
});

describe("colours", () => {
  // The satori engine skips satori's colour conversion (satori.ts): that is only sound while every colour
  // in the SVG is one resvg reads as written.
  test("every colour that reaches resvg is written in hex, in both themes of every template", async () => {
    const accent = "#e8590c";
    for (const [name, template] of Object.entries(templates)) {
      for (const theme of [undefined, { mode: "dark", accent }]) {
        const { svg } = await renderer.svg(name, { ...template.example, theme });
        const colours = [...svg.matchAll(/(?:fill|stroke|stop-color|flood-color)="([^"]*)"/g)].map(
          (m) => m[1],
        );
        expect(colours.length).toBeGreaterThan(3);
        for (const colour of colours)
          expect(colour).toMatch(/^(#[0-9a-f]{3}|#[0-9a-f]{6}|none|url\(#[^)]+\))$/i);
      }
    }
  });
});
