import { z } from "zod";
import { div, type El } from "../h";
import {
  byline,
  clamp,
  oneLine,
  personSchema,
  resolvePerson,
  textDirection,
  textLength,
  tracking,
} from "./parts";
import { mix, palette, themeSchema } from "./theme";
import { defineTemplate } from "./types";

const WIDTH = 1200;
const HEIGHT = 630;
const PAD = 72;

export const ogSchema = z.object({
  title: z.string().trim().min(1).max(200),
  subtitle: z.string().trim().max(300).optional(),
  author: personSchema.optional(),
  /** Small label above the title, e.g. a site section. */
  eyebrow: z.string().trim().max(60).optional(),
  footer: z.string().trim().max(100).optional().describe("Brand line at the bottom right"),
  theme: themeSchema.optional(),
});

export type OgData = z.output<typeof ogSchema>;

/** Title size steps down with length so long titles keep to at most four lines. */
function titleSize(length: number): number {
  if (length <= 40) return 72;
  if (length <= 70) return 62;
  if (length <= 110) return 52;
  return 44;
}

function renderOg(data: OgData): El {
  const colours = palette(data.theme);
  const size = titleSize(textLength(data.title));
  return div(
    {
      display: "flex",
      width: WIDTH,
      height: HEIGHT,
      backgroundColor: colours.background,
      fontFamily: "Inter",
    },
    div({ width: 16, height: HEIGHT, backgroundColor: colours.accent }),
    div(
      { display: "flex", flexDirection: "column", flex: 1, padding: `${PAD - 8}px ${PAD}px`, minWidth: 0 },
      data.eyebrow
        ? div(
            {
              ...oneLine,
              fontSize: 22,
              fontWeight: 800,
              letterSpacing: 2,
              color: mix(colours.accent, colours.text, 0.8),
              marginBottom: 20,
            },
            data.eyebrow.toUpperCase(),
          )
        : null,
      div(
        {
          ...clamp(size >= 62 ? 3 : 4),
          ...textDirection(data.title),
          fontSize: size,
          lineHeight: 1.12,
          fontWeight: 800,
          letterSpacing: tracking(data.title, -size * 0.025),
          color: colours.text,
        },
        data.title,
      ),
      data.subtitle
        ? div(
            {
              ...clamp(2),
              ...textDirection(data.subtitle),
              marginTop: 24,
              fontSize: 30,
              lineHeight: 1.35,
              color: colours.muted,
            },
            data.subtitle,
          )
        : null,
      div(
        { display: "flex", alignItems: "center", justifyContent: "space-between", marginTop: "auto" },
        data.author ? byline(data.author, colours, { avatar: 64, name: 28 }) : div({}),
        data.footer
          ? div(
              { ...oneLine, maxWidth: 520, marginLeft: 24, fontSize: 24, color: colours.muted },
              data.footer,
            )
          : null,
      ),
    ),
  );
}

export const og = defineTemplate({
  name: "og",
  description: "Open Graph link preview: title, subtitle, author and an accent colour.",
  width: WIDTH,
  height: HEIGHT,
  schema: ogSchema,
  example: {
    eyebrow: "Engineering",
    title: "How we render share cards in 10 ms without a browser",
    subtitle: "Satori lays out the card, resvg rasterises it, and worker threads keep the event loop free.",
    author: { name: "Grace Hopper", handle: "grace" },
    footer: "easel.example/blog",
    theme: { accent: "#e8590c" },
  },
  render: renderOg,
  resolveImages: async (data, resolve) => ({ ...data, author: await resolvePerson(data.author, resolve) }),
});
