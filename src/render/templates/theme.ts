import { z } from "zod";

export const hexColor = z
  .string()
  .regex(/^#[0-9a-fA-F]{6}$/, "a #rrggbb colour")
  .describe("A colour as #rrggbb");

export const themeSchema = z
  .object({
    mode: z.enum(["light", "dark"]).default("light"),
    accent: hexColor.default("#6d5ae6"),
  })
  .describe("Colour scheme and accent colour");

export type ThemeInput = z.input<typeof themeSchema>;

/** The colours a template paints with, all derived from the mode and accent. */
export interface Palette {
  background: string;
  text: string;
  muted: string;
  track: string;
  fill: string;
  leaderFill: string;
  leaderText: string;
  accent: string;
  avatarText: string;
}

function rgb(hex: string): [number, number, number] {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

function toHex(channels: number[]): string {
  return `#${channels.map((c) => Math.round(c).toString(16).padStart(2, "0")).join("")}`;
}

/** `weight` of `a` over `b`, in sRGB (close enough for tints). */
export function mix(a: string, b: string, weight: number): string {
  const [ca, cb] = [rgb(a), rgb(b)];
  return toHex(ca.map((c, i) => c * weight + cb[i]! * (1 - weight)));
}

export function palette(theme: ThemeInput | undefined): Palette {
  const { mode, accent } = themeSchema.parse(theme ?? {});
  if (mode === "dark") {
    const background = "#12131a";
    const track = "#1e202b";
    return {
      background,
      text: "#f4f4f7",
      muted: "#9a9cb0",
      track,
      fill: "#2f3242",
      leaderFill: mix(accent, track, 0.55),
      leaderText: mix(accent, "#ffffff", 0.35),
      accent,
      avatarText: "#ffffff",
    };
  }
  const track = "#f1f1f6";
  return {
    background: "#ffffff",
    text: "#14151f",
    muted: "#6b6d80",
    track,
    fill: "#dfe0ea",
    leaderFill: mix(accent, "#ffffff", 0.3),
    leaderText: mix(accent, "#000000", 0.75),
    accent,
    avatarText: "#ffffff",
  };
}

const AVATAR_COLOURS = [
  "#e8590c",
  "#d6336c",
  "#ae3ec9",
  "#7048e8",
  "#1c7ed6",
  "#0ca678",
  "#37b24d",
  "#f08c00",
];

/** A stable colour per name, so a creator's initials circle keeps its colour across renders. */
export function avatarColour(name: string): string {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)!) >>> 0;
  return AVATAR_COLOURS[hash % AVATAR_COLOURS.length]!;
}

/** Up to two initials from the first and last word ("Ada Lovelace" → "AL"); "?" for no letters. */
export function initials(name: string): string {
  const words = name
    .trim()
    .split(/\s+/)
    .filter((w) => /\p{L}|\p{N}/u.test(w));
  const first = words[0];
  if (!first) return "?";
  const last = words.length > 1 ? words[words.length - 1]! : "";
  const letter = (w: string) => [...w.replace(/^[^\p{L}\p{N}]+/u, "")][0] ?? "";
  return (letter(first) + letter(last)).toUpperCase();
}
