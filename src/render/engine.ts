import { CARD_ENGINES } from "../config";
import type { EmojiLoader } from "./emoji";
import type { FallbackFonts, FontFace } from "./fonts";
import type { El } from "./h";

/** The card renderers Easel ships; `CARD_RENDERER` chooses one (the list lives with the setting). */
export const ENGINES = CARD_ENGINES;
export type EngineName = (typeof ENGINES)[number];

/** What both engines draw with, so a card looks the same whichever renders it. One set per thread. */
export interface RenderAssets {
  /** The base font (Inter), every subset and weight. */
  fonts: FontFace[];
  /** Faces for scripts the base font lacks, loaded when a card first uses them. */
  fallbacks: FallbackFonts;
  emoji: EmojiLoader;
}

/**
 * Told as each stage of one render ends, with the stage's name (`bun run bench render --stages` times them).
 * The names are the engine's own: "layout", "parse", "draw", "encode"...
 */
export type StageMark = (stage: string) => void;

/** Turns a template's element tree into a PNG (and, for debugging, an SVG). */
export interface RenderEngine {
  readonly name: EngineName;
  render(element: El, width: number, height: number, mark?: StageMark): Promise<Uint8Array>;
  svg(element: El, width: number, height: number): Promise<string>;
}
