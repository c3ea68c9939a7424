/**
 * The nesting depth of a JSON text, found without parsing it: one pass over the characters counting
 * brackets outside strings. JSON.parse and every recursive walk after it (validation, error reporting,
 * logging) recurse once per level, so a body of a few hundred kilobytes of `[[[…` can block the event loop
 * for seconds or overflow the stack; this scan is linear, iterative and stops at the first level too deep.
 */
import { ApiError } from "./errors";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/** True when `text` nests arrays/objects deeper than `max` levels (malformed JSON is left to the parser). */
export function jsonTooDeep(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > max) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/**
 * Parses JSON text from a request once its nesting is known to be within `maxDepth`; deeper text is a 400
 * `body_too_deep`, syntax errors are whatever JSON.parse throws.
 */
export function parseShallowJson(text: string, maxDepth: number): unknown {
  if (jsonTooDeep(text, maxDepth)) {
    throw new ApiError(400, "body_too_deep", `the JSON body nests deeper than ${maxDepth} levels`);
  }
  return JSON.parse(text);
}
