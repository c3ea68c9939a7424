import { z } from "zod";
import { div, type El, img } from "../h";
import { avatarColour, initials, type Palette } from "./theme";

export const personSchema = z.object({
  name: z.string().trim().min(1).max(80),
  handle: z
    .string()
    .trim()
    .max(40)
    .transform((h) => h.replace(/^@/, ""))
    .optional(),
  avatarUrl: z
    .union([
      z.url({ protocol: /^https?$/ }),
      z
        .string()
        .regex(/^data:image\//)
        .max(3_000_000),
    ])
    .optional()
    .describe("https URL or data URL; fetched through the URL guard and embedded as PNG"),
});

export type Person = z.output<typeof personSchema>;

const grouped = new Intl.NumberFormat("en-US");

export function formatCount(n: number): string {
  return grouped.format(n);
}

export function plural(n: number, one: string, many: string): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/** Only embedded images are drawn: satori would otherwise fetch a remote URL itself, unguarded. */
export function isEmbedded(url: string | undefined): url is string {
  return url?.startsWith("data:image/") ?? false;
}

export function avatar(person: Person, size: number, colours: Palette): El {
  if (isEmbedded(person.avatarUrl)) {
    return img(person.avatarUrl, size, size, { borderRadius: size / 2, flexShrink: 0 });
  }
  return div(
    {
      width: size,
      height: size,
      flexShrink: 0,
      borderRadius: size / 2,
      backgroundColor: avatarColour(person.name),
      color: colours.avatarText,
      fontSize: Math.round(size * 0.4),
      fontWeight: 600,
      alignItems: "center",
      justifyContent: "center",
    },
    initials(person.name),
  );
}

/**
 * Text clamped to `lines` lines, ending in an ellipsis. Satori clamps without `overflow: hidden`, which would
 * cost a full-canvas mask layer in resvg per element; `anywhere` breaks words too long for a line.
 */
export function clamp(lines: number) {
  return { display: "block", lineClamp: lines, overflowWrap: "anywhere" } as const;
}

const PICTOGRAPH = /\p{Extended_Pictographic}/gu;

/** Length in character widths for size estimates: an emoji is drawn about two characters wide. */
export function textLength(text: string): number {
  return [...text].length + (text.match(PICTOGRAPH)?.length ?? 0);
}

const FIRST_STRONG = /[\p{L}\p{Nl}]/u;
const RIGHT_TO_LEFT = /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}]/u;

/**
 * The paragraph direction a browser gives `dir="auto"` text: right to left when its first letter is Hebrew,
 * Arabic (or another RTL script). Trailing punctuation then lands on the left and the text aligns right.
 */
export function textDirection(text: string): { direction?: "rtl" } {
  const first = FIRST_STRONG.exec(text)?.[0];
  return first && RIGHT_TO_LEFT.test(first) ? { direction: "rtl" } : {};
}

const CURSIVE = /[\p{Script=Arabic}\p{Script=Syriac}\p{Script=Nko}\p{Script=Mongolian}]/u;

/**
 * Letter spacing for `text`, or none when it is in a cursive script: spacing the letters of Arabic apart
 * breaks their joins (CSS leaves it off for such scripts, and satori would also misplace their dots).
 */
export function tracking(text: string, spacing: number): number {
  return CURSIVE.test(text) ? 0 : spacing;
}

/** A single line that ends in an ellipsis rather than wrapping or overflowing. */
export const oneLine = clamp(1);

/** Name and @handle beside the avatar. */
export function byline(person: Person, colours: Palette, size: { avatar: number; name: number }): El {
  return div(
    { display: "flex", alignItems: "center", gap: Math.round(size.avatar * 0.3), minWidth: 0, flexShrink: 1 },
    avatar(person, size.avatar, colours),
    div(
      { display: "flex", flexDirection: "column", minWidth: 0 },
      div(
        {
          ...oneLine,
          ...textDirection(person.name),
          fontSize: size.name,
          fontWeight: 600,
          color: colours.text,
        },
        person.name,
      ),
      person.handle
        ? div(
            { ...oneLine, fontSize: Math.round(size.name * 0.8), color: colours.muted },
            `@${person.handle}`,
          )
        : null,
    ),
  );
}

export async function resolvePerson<P extends Person | undefined>(
  person: P,
  resolve: (url: string | undefined) => Promise<string | undefined>,
): Promise<P> {
  if (!person) return person;
  const { avatarUrl, ...rest } = person;
  const resolved = await resolve(avatarUrl);
  return (resolved === undefined ? rest : { ...rest, avatarUrl: resolved }) as P;
}
