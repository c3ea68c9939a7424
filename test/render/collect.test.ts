import { describe, expect, test } from "bun:test";
import { createCollector } from "../../src/render/collect";

describe("createCollector", () => {
  test("collects after every Nth card, not before", () => {
    let collections = 0;
    const afterCard = createCollector({ every: 4, idleMs: 60_000, collect: () => collections++ });
    for (let i = 0; i < 3; i++) afterCard();
    expect(collections).toBe(0);
    afterCard();
    expect(collections).toBe(1);
    for (let i = 0; i < 8; i++) afterCard();
    expect(collections).toBe(3);
  });

  test("collects once the thread has been idle after a card, and counts again from there", async () => {
    let collections = 0;
    let idleCollection: () => void = () => {};
    const collected = new Promise<void>((resolve) => {
      idleCollection = resolve;
    });
    const afterCard = createCollector({
      every: 4,
      idleMs: 20,
      collect: () => {
        collections++;
        idleCollection();
      },
    });
    afterCard();
    afterCard();
    await collected;
    expect(collections).toBe(1);
    // The idle collection reset the count: three more cards are not yet a fourth.
    for (let i = 0; i < 3; i++) afterCard();
    expect(collections).toBe(1);
    afterCard();
    expect(collections).toBe(2);
  });
});
