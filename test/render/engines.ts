import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ENGINES, type EngineName } from "../../src/render/engine";
import { type CardRenderer, createCardRenderer } from "../../src/render/render";

/** One renderer per engine for a test file: fonts load once, as in a worker. */
export function renderers(): Record<EngineName, CardRenderer> {
  return Object.fromEntries(ENGINES.map((engine) => [engine, createCardRenderer({ engine })])) as Record<
    EngineName,
    CardRenderer
  >;
}

const ARTIFACTS = join(import.meta.dir, "../../test-artifacts/cards");

/** Keeps a rendered PNG under test-artifacts/cards/ (git-ignored), to look at after changing a template. */
export function keep(name: string, png: Uint8Array): void {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(join(ARTIFACTS, `${name}.png`), png);
}
