import { z } from "zod";
import { div, type El } from "../h";
import { percentages } from "../percentages";
import {
  byline,
  clamp,
  oneLine,
  type Person,
  personSchema,
  plural,
  resolvePerson,
  textDirection,
  textLength,
  tracking,
} from "./parts";
import { type Palette, palette, themeSchema } from "./theme";
import { defineTemplate } from "./types";

const WIDTH = 1200;
const HEIGHT = 800;
const PAD_X = 64;
const PAD_Y = 52;
const CONTENT_WIDTH = WIDTH - 2 * PAD_X;
const HEADER = 56;
const FOOTER = 30;
const SECTION_GAP = 32;

export const pollSchema = z.object({
  question: z.string().trim().min(1).max(300),
  creator: personSchema,
  options: z
    .array(
      z.object({
        label: z.string().trim().min(1).max(200),
        votes: z.number().int().min(0).max(1e12),
      }),
    )
    .min(2)
    .max(10),
  highlightLeader: z.boolean().default(true),
  footer: z.string().trim().max(100).optional().describe("Brand line at the bottom right"),
  theme: themeSchema.optional(),
});

export type PollData = z.output<typeof pollSchema>;

/** Row metrics by option count: fewer options get taller rows and larger text. */
function rowMetrics(count: number): { height: number; gap: number; font: number } {
  if (count <= 2) return { height: 92, gap: 20, font: 34 };
  if (count <= 3) return { height: 80, gap: 18, font: 31 };
  if (count <= 4) return { height: 68, gap: 14, font: 28 };
  if (count <= 6) return { height: 54, gap: 12, font: 24 };
  if (count <= 8) return { height: 44, gap: 9, font: 21 };
  return { height: 36, gap: 7, font: 18 };
}

const QUESTION_SIZES = [72, 64, 56, 50, 44, 39, 35, 31, 28, 25];
const LINE_HEIGHT = 1.18;
// Inter ExtraBold averages about 0.58 em per character; the slack covers word-wrap waste.
const EM_PER_CHAR = 0.58;
const WRAP_SLACK = 1.15;

/**
 * The largest question size whose estimated line count fits the space the options leave, plus the line clamp
 * that guarantees the text stays inside even when the estimate is off (satori then ends it with an ellipsis).
 */
export function questionFit(length: number, available: number): { fontSize: number; lines: number } {
  for (const fontSize of QUESTION_SIZES) {
    const lines = Math.floor(available / (fontSize * LINE_HEIGHT));
    const perLine = CONTENT_WIDTH / (fontSize * EM_PER_CHAR);
    if (lines >= 1 && Math.ceil((length * WRAP_SLACK) / perLine) <= lines) return { fontSize, lines };
  }
  const fontSize = QUESTION_SIZES[QUESTION_SIZES.length - 1]!;
  return { fontSize, lines: Math.max(1, Math.floor(available / (fontSize * LINE_HEIGHT))) };
}

function questionSpace(optionCount: number): number {
  const { height, gap } = rowMetrics(optionCount);
  const options = optionCount * height + (optionCount - 1) * gap;
  return HEIGHT - 2 * PAD_Y - HEADER - FOOTER - 3 * SECTION_GAP - options;
}

function header(creator: Person, colours: Palette): El {
  return div(
    { display: "flex", alignItems: "center", justifyContent: "space-between", height: HEADER },
    byline(creator, colours, { avatar: HEADER, name: 26 }),
    div(
      {
        display: "flex",
        flexShrink: 0,
        marginLeft: 24,
        padding: "8px 18px",
        borderRadius: 999,
        backgroundColor: colours.track,
        color: colours.muted,
        fontSize: 18,
        fontWeight: 600,
        letterSpacing: 2,
      },
      "POLL",
    ),
  );
}

function question(text: string, optionCount: number, colours: Palette): El {
  const { fontSize, lines } = questionFit(textLength(text), questionSpace(optionCount));
  return div(
    {
      ...clamp(lines),
      ...textDirection(text),
      fontSize,
      lineHeight: LINE_HEIGHT,
      fontWeight: 800,
      letterSpacing: tracking(text, -fontSize * 0.02),
      color: colours.text,
    },
    text,
  );
}

interface Row {
  label: string;
  votes: number;
  percent: number;
  leader: boolean;
}

const above = { position: "relative" } as const;

function optionRow(row: Row, metrics: ReturnType<typeof rowMetrics>, colours: Palette): El {
  const radius = Math.round(metrics.height * 0.28);
  return div(
    {
      display: "flex",
      alignItems: "center",
      position: "relative",
      height: metrics.height,
      padding: `0 ${Math.round(metrics.height * 0.36)}px`,
      borderRadius: radius,
      backgroundColor: colours.track,
      fontSize: metrics.font,
      color: colours.text,
    },
    row.percent > 0
      ? div({
          position: "absolute",
          left: 0,
          top: 0,
          bottom: 0,
          width: `${row.percent}%`,
          borderRadius: radius,
          backgroundColor: row.leader ? colours.leaderFill : colours.fill,
        })
      : null,
    // Positioned like the bar so they paint above it (positioned boxes paint in tree order).
    div(
      {
        ...oneLine,
        ...above,
        ...textDirection(row.label),
        flex: 1,
        minWidth: 0,
        fontWeight: row.leader ? 800 : 600,
      },
      row.label,
    ),
    div(
      {
        ...above,
        flexShrink: 0,
        marginLeft: 20,
        fontSize: Math.round(metrics.font * 0.8),
        color: colours.muted,
      },
      plural(row.votes, "vote", "votes"),
    ),
    div(
      {
        ...above,
        flexShrink: 0,
        width: Math.round(metrics.font * 3.1),
        justifyContent: "flex-end",
        fontWeight: 800,
        color: row.leader ? colours.leaderText : colours.text,
      },
      `${row.percent}%`,
    ),
  );
}

export function pollRows(data: PollData): Row[] {
  const votes = data.options.map((o) => o.votes);
  const percent = percentages(votes);
  const top = Math.max(...votes);
  return data.options.map((o, i) => ({
    label: o.label,
    votes: o.votes,
    percent: percent[i]!,
    leader: data.highlightLeader && top > 0 && o.votes === top,
  }));
}

function footer(total: number, brand: string | undefined, colours: Palette): El {
  return div(
    { display: "flex", alignItems: "center", justifyContent: "space-between", height: FOOTER, fontSize: 22 },
    div(
      { display: "flex", alignItems: "center", gap: 12, color: colours.text, fontWeight: 600 },
      div({ width: 12, height: 12, borderRadius: 6, backgroundColor: colours.accent }),
      total > 0 ? plural(total, "vote", "votes") : "No votes yet",
    ),
    brand ? div({ ...oneLine, maxWidth: 640, marginLeft: 24, color: colours.muted }, brand) : null,
  );
}

function renderPoll(data: PollData): El {
  const colours = palette(data.theme);
  const metrics = rowMetrics(data.options.length);
  const rows = pollRows(data);
  const total = data.options.reduce((sum, o) => sum + o.votes, 0);
  return div(
    {
      display: "flex",
      flexDirection: "column",
      width: WIDTH,
      height: HEIGHT,
      padding: `${PAD_Y}px ${PAD_X}px`,
      backgroundColor: colours.background,
      fontFamily: "Inter",
    },
    header(data.creator, colours),
    div(
      { display: "flex", flexDirection: "column", flex: 1, justifyContent: "center", gap: SECTION_GAP },
      question(data.question, data.options.length, colours),
      div(
        { display: "flex", flexDirection: "column", gap: metrics.gap },
        ...rows.map((row) => optionRow(row, metrics, colours)),
      ),
    ),
    footer(total, data.footer, colours),
  );
}

export const poll = defineTemplate({
  name: "poll",
  description: "Poll results: question, creator, options with vote counts, percentages and bars.",
  width: WIDTH,
  height: HEIGHT,
  schema: pollSchema,
  example: {
    question: "Which feature should we build next? 🚀",
    creator: { name: "Ada Lovelace", handle: "ada" },
    options: [
      { label: "Dark mode", votes: 412 },
      { label: "Offline sync", votes: 287 },
      { label: "Keyboard shortcuts", votes: 164 },
      { label: "Custom themes 🎨", votes: 58 },
    ],
    footer: "easel.example · vote at easel.example/p/42",
  },
  render: renderPoll,
  resolveImages: async (data, resolve) => ({ ...data, creator: await resolvePerson(data.creator, resolve) }),
});
