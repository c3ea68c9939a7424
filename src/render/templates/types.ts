import type { z } from "zod";
import type { El } from "../h";

/** Turns a user-supplied image URL into a data URL the render worker can embed, or undefined to fall back. */
export type ImageResolver = (url: string | undefined) => Promise<string | undefined>;

/**
 * A card template. `render` is pure and synchronous: it runs inside a render worker on data that `schema`
 * has parsed and whose image URLs `resolveImages` has already turned into data URLs.
 */
export interface CardTemplate<S extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  width: number;
  height: number;
  schema: S;
  /** Valid input data, shown by the API and used by the benchmark. */
  example: z.input<S>;
  render(data: z.output<S>): El;
  /** Replaces image URLs in parsed data with data URLs (or drops them); runs before the worker. */
  resolveImages(data: z.output<S>, resolve: ImageResolver): Promise<z.output<S>>;
}

export function defineTemplate<S extends z.ZodType>(template: CardTemplate<S>): CardTemplate<S> {
  return template;
}
