/**
 * A tiny HTML template tag: every interpolated value is escaped unless it is itself `Html` (built by this
 * tag or `raw`). Arrays are joined; null, undefined and false render nothing, so `${cond && html`…`}` works.
 */
const HTML = Symbol("html");

export type Html = { readonly [HTML]: true; readonly value: string; toString(): string };

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);
}

/** Marks trusted markup (never user input) as HTML. */
export function raw(value: string): Html {
  return { [HTML]: true, value, toString: () => value };
}

export function isHtml(v: unknown): v is Html {
  return typeof v === "object" && v !== null && HTML in v;
}

function render(v: unknown): string {
  if (v === null || v === undefined || v === false) return "";
  if (isHtml(v)) return v.value;
  if (Array.isArray(v)) return v.map(render).join("");
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? "");
  return raw(out);
}
