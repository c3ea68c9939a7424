import { describe, expect, test } from "bun:test";
import { ENGINES } from "../../src/render/engine";
import { FallbackFonts, loadFonts } from "../../src/render/fonts";
import { templates } from "../../src/render/templates";
import { keep, renderers } from "./engines";
import { count, decode, type Pixels } from "./pixels";

const engines = renderers();

/** Two different questions in each script, of similar length: missing glyphs would draw identical boxes. */
const SCRIPTS = {
  japanese: ["好きな季節はどれですか？", "明日の天気はどうなりますか？"],
  chinese: ["你最喜欢哪个季节？", "今天晚上吃什么菜？"],
  korean: ["가장 좋아하는 계절은?", "오늘 저녁 뭐 먹을까요?"],
  arabic: ["ما هو فصلك المفضل؟", "أين نذهب في العطلة؟"],
  hebrew: ["מהי העונה האהובה עליך?", "לאן נטייל בחופשה?"],
  devanagari: ["आपका पसंदीदा मौसम कौन सा है?", "आज रात खाने में क्या है?"],
  thai: ["คุณชอบฤดูไหนมากที่สุด", "คืนนี้กินอะไรดี"],
} as const;

/** Glyphs of a script no package covers (Ethiopic): each draws the same missing-glyph box. */
const MISSING = "ሀሁሂሃሄህሆለሉሊ";

const QUESTION_BAND = { x0: 0, y0: 130, x1: 1200, y1: 560 };

function poll(question: string) {
  return {
    ...templates.poll.example,
    question,
    options: [
      { label: question.slice(0, 5), votes: 3 },
      { label: "B", votes: 1 },
    ],
  };
}

/** Pixels in the question band whose red channel differs between two renders, on a 2 px grid. */
function differing(a: Pixels, b: Pixels): number {
  let n = 0;
  for (let y = QUESTION_BAND.y0; y < QUESTION_BAND.y1; y += 2)
    for (let x = QUESTION_BAND.x0; x < QUESTION_BAND.x1; x += 2) if (a.at(x, y)[0] !== b.at(x, y)[0]) n++;
  return n;
}

const ink = (img: Pixels) => count(img, QUESTION_BAND, (p) => p[0]! < 100);

describe.each(ENGINES)("every script renders real glyphs (%s)", (engine) => {
  const renderer = engines[engine];

  for (const [script, [first, second]] of Object.entries(SCRIPTS)) {
    test(script, async () => {
      const render = async (text: string, name: string) => {
        const { png } = await renderer.render("poll", poll(text));
        keep(`${engine}-script-${name}`, png);
        return decode(png);
      };
      const a = await render(first, `${script}-1`);
      const b = await render(second, `${script}-2`);
      const boxes = await render(MISSING, "missing");
      expect(ink(a)).toBeGreaterThan(3000); // text was drawn
      expect(differing(a, b)).toBeGreaterThan(500);
      expect(differing(a, boxes)).toBeGreaterThan(500);
    });
  }

  test("right-to-left questions align right and end on the left", async () => {
    const img = await decode((await renderer.render("poll", poll(SCRIPTS.hebrew[1]))).png);
    const columns = (x0: number, x1: number) => count(img, { ...QUESTION_BAND, x0, x1 }, (p) => p[0]! < 100);
    // Short text: the right half carries the ink, the left edge of the content box has none.
    expect(columns(600, 1136)).toBeGreaterThan(columns(64, 600));
  });
});

describe("fallback fonts", () => {
  const fallbacks = new FallbackFonts(loadFonts([400]), [400]);

  test("load only the slices a text needs, once", () => {
    expect(fallbacks.facesFor("Hello, Привет, Việt 🍕")).toEqual([]);
    const japanese = fallbacks.facesFor("こんにちは");
    expect(japanese.length).toBeGreaterThan(0);
    expect(japanese.length).toBeLessThan(4);
    expect(new Set(japanese.map((f) => f.family))).toEqual(new Set(["Noto Sans JP"]));
    expect(fallbacks.facesFor("こんにちは")[0]).toBe(japanese[0]!); // cached, same object
    const bytes = japanese.reduce((sum, f) => sum + f.data.byteLength, 0);
    expect(bytes).toBeLessThan(500_000); // slices, not the 1.4 MB full face
  });

  test("Han characters follow the text's language", () => {
    const families = (text: string) => new Set(fallbacks.facesFor(text).map((f) => f.family));
    expect(families("学生")).toEqual(new Set(["Noto Sans SC"]));
    expect(families("学生です")).toEqual(new Set(["Noto Sans JP"]));
    expect(families("학생 學生")).toEqual(new Set(["Noto Sans KR"]));
    expect(families("שלום سلام नमस्ते สวัสดี")).toEqual(
      new Set(["Noto Sans Hebrew", "Noto Kufi Arabic", "Noto Sans Devanagari", "Noto Sans Thai"]),
    );
  });
});
