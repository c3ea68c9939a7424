import { describe, expect, test } from "bun:test";
import { twemojiNames } from "../../src/render/emoji";
import {
  CardDataError,
  getTemplate,
  listTemplates,
  parseCardData,
  prepareCardData,
  templateNames,
  templates,
  UnknownTemplateError,
} from "../../src/render/templates";
import { pollRows, pollSchema, questionFit } from "../../src/render/templates/poll";
import { initials, mix } from "../../src/render/templates/theme";

describe("template registry", () => {
  test("lists every template with a JSON schema that accepts its example", () => {
    const list = listTemplates();
    expect(list.map((t) => t.name)).toEqual(["poll", "og"]);
    const poll = list.find((t) => t.name === "poll")!;
    expect(poll.width).toBe(1200);
    expect(poll.height).toBe(800);
    const schema = poll.schema as { type: string; required: string[]; properties: Record<string, unknown> };
    expect(schema.type).toBe("object");
    expect(schema.required).toEqual(expect.arrayContaining(["question", "creator", "options"]));
    expect(Object.keys(schema.properties)).toContain("highlightLeader");
    expect(list.find((t) => t.name === "og")!.height).toBe(630);
    for (const name of templateNames)
      expect(() => parseCardData(name, getTemplate(name).example)).not.toThrow();
  });

  test("an unknown template is a typed 422 error", () => {
    const err = (() => {
      try {
        getTemplate("nope");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UnknownTemplateError);
    expect((err as UnknownTemplateError).code).toBe("unknown_template");
    expect((err as UnknownTemplateError).status).toBe(422);
    expect(() => getTemplate("toString")).toThrow(UnknownTemplateError);
  });

  test("invalid data is a CardDataError naming the fields", () => {
    const bad = { ...templates.poll.example, options: [{ label: "only one", votes: 1 }] };
    try {
      parseCardData("poll", bad);
      throw new Error("expected a CardDataError");
    } catch (err) {
      expect(err).toBeInstanceOf(CardDataError);
      expect((err as CardDataError).code).toBe("invalid_card_data");
      expect(JSON.stringify((err as CardDataError).details)).toContain("options");
    }
  });

  test("poll schema bounds", () => {
    const base = templates.poll.example;
    const ok = (data: unknown) => pollSchema.safeParse(data).success;
    expect(ok({ ...base, question: "x".repeat(300) })).toBe(true);
    expect(ok({ ...base, question: "x".repeat(301) })).toBe(false);
    expect(
      ok({ ...base, options: Array.from({ length: 10 }, (_, i) => ({ label: `o${i}`, votes: i })) }),
    ).toBe(true);
    expect(
      ok({ ...base, options: Array.from({ length: 11 }, (_, i) => ({ label: `o${i}`, votes: i })) }),
    ).toBe(false);
    expect(
      ok({
        ...base,
        options: [
          { label: "a", votes: -1 },
          { label: "b", votes: 0 },
        ],
      }),
    ).toBe(false);
    expect(
      ok({
        ...base,
        options: [
          { label: "a", votes: 1.5 },
          { label: "b", votes: 0 },
        ],
      }),
    ).toBe(false);
    expect(ok({ ...base, theme: { accent: "red" } })).toBe(false);
    expect(ok({ ...base, creator: { name: "A", avatarUrl: "file:///etc/passwd" } })).toBe(false);
    expect(pollSchema.parse({ ...base, creator: { name: "A", handle: "@ada" } }).creator.handle).toBe("ada");
    expect(pollSchema.parse(base).highlightLeader).toBe(true);
  });

  test("prepareCardData validates and swaps avatar URLs through the resolver", async () => {
    const seen: Array<string | undefined> = [];
    const data = {
      ...templates.poll.example,
      creator: { name: "A", avatarUrl: "https://example.com/a.png" },
    };
    const prepared = (await prepareCardData("poll", data, async (url) => {
      seen.push(url);
      return "data:image/png;base64,AAAA";
    })) as { creator: { avatarUrl?: string } };
    expect(seen).toEqual(["https://example.com/a.png"]);
    expect(prepared.creator.avatarUrl).toBe("data:image/png;base64,AAAA");
    const dropped = (await prepareCardData("poll", data, async () => undefined)) as { creator: object };
    expect(dropped.creator).not.toHaveProperty("avatarUrl");
    await expect(prepareCardData("poll", { question: "?" }, async () => undefined)).rejects.toThrow(
      CardDataError,
    );
  });
});

describe("poll layout rules", () => {
  test("rows carry percentages and mark every tied leader", () => {
    const rows = pollRows(
      pollSchema.parse({
        ...templates.poll.example,
        options: [
          { label: "a", votes: 2 },
          { label: "b", votes: 2 },
          { label: "c", votes: 1 },
        ],
      }),
    );
    expect(rows.map((r) => r.percent)).toEqual([40, 40, 20]);
    expect(rows.map((r) => r.leader)).toEqual([true, true, false]);
  });

  test("no leader without votes or when highlighting is off", () => {
    const zero = {
      ...templates.poll.example,
      options: [
        { label: "a", votes: 0 },
        { label: "b", votes: 0 },
      ],
    };
    expect(pollRows(pollSchema.parse(zero)).some((r) => r.leader)).toBe(false);
    const off = { ...templates.poll.example, highlightLeader: false };
    expect(pollRows(pollSchema.parse(off)).some((r) => r.leader)).toBe(false);
  });

  test("the question font steps down with length and never needs more lines than fit", () => {
    const sizes = [10, 60, 120, 200, 300].map((n) => questionFit(n, 200).fontSize);
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeLessThanOrEqual(sizes[i - 1]!);
    expect(sizes[0]!).toBeGreaterThan(sizes[4]!);
    for (const n of [10, 300]) {
      const fit = questionFit(n, 90);
      expect(fit.lines * fit.fontSize * 1.18).toBeLessThanOrEqual(90);
    }
  });
});

describe("helpers", () => {
  test("initials", () => {
    expect(initials("Ada Lovelace")).toBe("AL");
    expect(initials("grace brewster murray hopper")).toBe("GH");
    expect(initials("Марина")).toBe("М");
    expect(initials("  ")).toBe("?");
    expect(initials("@@ !!")).toBe("?");
    expect(initials('"Bob" Smith')).toBe("BS");
  });

  test("mix blends in sRGB", () => {
    expect(mix("#ffffff", "#000000", 0.5)).toBe("#808080");
    expect(mix("#6d5ae6", "#ffffff", 1)).toBe("#6d5ae6");
  });

  test("twemoji file names drop U+FE0F except in ZWJ sequences", () => {
    expect(twemojiNames("🚀")).toEqual(["1f680", "1f680"]);
    expect(twemojiNames("❤️")).toEqual(["2764", "2764-fe0f"]);
    expect(twemojiNames("❤️‍🔥")[0]).toBe("2764-fe0f-200d-1f525");
    expect(twemojiNames("👍🏽")[0]).toBe("1f44d-1f3fd");
  });
});
