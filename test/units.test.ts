import { describe, expect, test } from "bun:test";
import { formatBytes } from "../src/units";

describe("formatBytes", () => {
  test("whole bytes below 1 KiB, then one decimal in the largest unit that keeps the number at 1 or more", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1024)).toBe("1.0 KiB");
    expect(formatBytes(49_152)).toBe("48.0 KiB");
    expect(formatBytes(1_572_864)).toBe("1.5 MiB");
    expect(formatBytes(480_000_000)).toBe("457.8 MiB");
    expect(formatBytes(3 * 2 ** 30)).toBe("3.0 GiB");
    expect(formatBytes(5 * 2 ** 40)).toBe("5.0 TiB");
    expect(formatBytes(2 ** 52)).toBe("4096.0 TiB");
  });

  test("just under a unit names the next one instead of printing 1024.0", () => {
    expect(formatBytes(2 ** 20 - 1)).toBe("1.0 MiB");
    expect(formatBytes(2 ** 30 - 1)).toBe("1.0 GiB");
    expect(formatBytes(1_048_000)).toBe("1023.4 KiB");
  });
});
