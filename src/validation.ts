/**
 * Zod issues as messages a caller can act on: an unknown field names the nearest known one, an enum lists
 * its valid values, an absent required field says "missing". One place, so every route words them alike.
 */
import type { z } from "zod";

/** One problem with a request, as `details[]` lists it. */
export type FieldProblem = { path: string; message: string; code: string };

type Issue = z.core.$ZodIssue;
type Path = readonly PropertyKey[];

/** Field paths as callers write them: `items.0.prompt`. */
export const pathText = (path: Path): string => path.map(String).join(".");

const quoteAll = (values: readonly unknown[]) => values.map((v) => `\`${String(v)}\``).join(", ");

/** How every "not one of the known names" error lists them: ``must be one of `a`, `b` ``. */
export const oneOf = (values: readonly unknown[]): string =>
  values.length === 1 ? `must be ${quoteAll(values)}` : `must be one of ${quoteAll(values)}`;

/**
 * The problems of a failed parse, unknown fields first (a typo there often explains every other issue).
 * `schema` and `input` let an unknown field be matched against the known ones and a missing one be told apart
 * from a wrong one.
 */
export function describeIssues(issues: readonly Issue[], schema: unknown, input: unknown): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const known = objectKeysAt(schema, issue.path);
      for (const key of issue.keys) {
        const path = pathText([...issue.path, key]);
        const near = nearest(key, known);
        const hint = near
          ? ` (did you mean \`${near}\`?)`
          : known.length
            ? `; known fields: ${quoteAll(known)}`
            : "";
        out.unshift({ path, code: "unknown_field", message: `unknown field \`${path}\`${hint}` });
      }
      continue;
    }
    out.push({ path: pathText(issue.path), code: issue.code, message: issueMessage(issue, input) });
  }
  return out;
}

/** One issue in words; `input` is the whole value parsed, to see whether the field was given at all. */
export function issueMessage(issue: Issue, input: unknown): string {
  switch (issue.code) {
    case "invalid_type":
      return valueAt(input, issue.path) === undefined
        ? "missing"
        : `expected ${issue.expected}, got ${typeName(valueAt(input, issue.path))}`;
    case "invalid_value":
      if (issue.path.length > 0 && valueAt(input, issue.path) === undefined) {
        return `missing (one of ${quoteAll(issue.values)})`;
      }
      return oneOf(issue.values);
    case "invalid_union": {
      // A union of a name and an inline object (output presets): the names are what a caller most likely meant.
      const choices = issue.errors.flat().find((i) => i.code === "invalid_value");
      if (choices && typeof valueAt(input, issue.path) !== "object") {
        return `${issueMessage(choices, undefined)}, or an inline object`;
      }
      const deeper = issue.errors.find((branch) => branch.every((i) => i.code !== "invalid_type"))?.[0];
      return deeper ? issueMessage(deeper, valueAt(input, issue.path)) : issue.message;
    }
    default:
      return issue.message;
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : typeof v;
}

function valueAt(input: unknown, path: Path): unknown {
  let v = input;
  for (const key of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

type Def = {
  type?: string;
  shape?: Record<string, unknown>;
  element?: unknown;
  innerType?: unknown;
  in?: unknown;
  options?: unknown[];
};
const defOf = (schema: unknown): Def | undefined => (schema as { def?: Def } | undefined)?.def;

/** Through wrappers (optional, default, pipe…) to the schema that decides the value's shape. */
function unwrap(schema: unknown): unknown {
  let s = schema;
  for (let i = 0; i < 16; i++) {
    const def = defOf(s);
    if (!def) return s;
    if (def.innerType !== undefined) s = def.innerType;
    else if (def.type === "pipe") s = def.in;
    else return s;
  }
  return s;
}

/** The field names of the object schema at `path` (array indexes step into the element schema). */
export function objectKeysAt(schema: unknown, path: Path): string[] {
  let s = unwrap(schema);
  for (const key of path) {
    const def = defOf(s);
    if (def?.type === "array") s = unwrap(def.element);
    else if (def?.type === "object" && def.shape) s = unwrap(def.shape[String(key)]);
    else return [];
  }
  const def = defOf(s);
  return def?.type === "object" && def.shape ? Object.keys(def.shape) : [];
}

/** The known name closest to `word`, if it is close enough to be a typo (case-insensitive edit distance). */
export function nearest(word: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = distance(word.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return best !== null && bestDistance <= limit ? best : null;
}

/** Damerau–Levenshtein (optimal string alignment): a swapped pair of letters is one typo, not two. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
