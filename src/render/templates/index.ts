import { z } from "zod";
import { CardDataError, UnknownTemplateError } from "../errors";
import { og } from "./og";
import { poll } from "./poll";
import type { CardTemplate, ImageResolver } from "./types";

export { CardDataError, UnknownTemplateError } from "../errors";
export type { CardTemplate, ImageResolver } from "./types";

/** Every card template by name. */
export const templates = { poll, og } as const satisfies Record<string, CardTemplate>;

export type TemplateName = keyof typeof templates;

export const templateNames = Object.keys(templates) as TemplateName[];

export function isTemplateName(name: string): name is TemplateName {
  return Object.hasOwn(templates, name);
}

export function getTemplate(name: string): CardTemplate {
  if (!isTemplateName(name)) throw new UnknownTemplateError(name, templateNames);
  return templates[name] as CardTemplate;
}

/** Parses `data` with the template's schema; throws CardDataError with the zod issues when it does not fit. */
export function parseCardData(template: string, data: unknown): unknown {
  const parsed = getTemplate(template).schema.safeParse(data);
  if (!parsed.success) throw new CardDataError(template, parsed.error.issues);
  return parsed.data;
}

/**
 * Validates card data and swaps its image URLs for embeddable data URLs (via `resolveImage`, normally the
 * avatar resolver). Runs on the main thread before the data goes to a render worker, which never fetches.
 */
export async function prepareCardData(
  template: string,
  data: unknown,
  resolveImage: ImageResolver,
): Promise<unknown> {
  return getTemplate(template).resolveImages(parseCardData(template, data), resolveImage);
}

export interface TemplateInfo {
  name: string;
  description: string;
  width: number;
  height: number;
  /** JSON Schema of the input data. */
  schema: unknown;
  example: unknown;
}

/** Template descriptions for the API (`GET /api/cards/templates`). */
export function listTemplates(): TemplateInfo[] {
  return templateNames.map((name) => {
    const t = getTemplate(name);
    return {
      name: t.name,
      description: t.description,
      width: t.width,
      height: t.height,
      schema: z.toJSONSchema(t.schema, { io: "input" }),
      example: t.example,
    };
  });
}
