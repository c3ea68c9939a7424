import { describe, expect, test } from "bun:test";
import { templates } from "../../src/render/templates";
import { renderers } from "./engines";
import { decode } from "./pixels";

const engines = renderers();

/** What `bun run bench render --stages` times: each engine names the end of every stage of a render, in order. */
describe("render stages", () => {
  const expected = {
    satori: ["tree", "layout", "parse", "draw", "pixels", "encode"],
    takumi: ["tree", "nodes", "draw", "encode"],
  } as const;

  for (const [engine, stages] of Object.entries(expected)) {
    test(`${engine} marks ${stages.join(", ")} and still renders the card`, async () => {
      const heard: string[] = [];
      const card = await engines[engine as keyof typeof expected].render(
        "poll",
        templates.poll.example,
        (stage) => heard.push(stage),
      );
      expect(heard).toEqual([...stages]);
      const img = await decode(card.png);
      expect([img.width, img.height]).toEqual([1200, 800]);
    });
  }

  test("invalid data fails before the first stage ends", async () => {
    const heard: string[] = [];
    await expect(
      engines.satori.render("poll", { question: "" }, (stage) => heard.push(stage)),
    ).rejects.toThrow();
    expect(heard).toEqual([]);
  });
});
