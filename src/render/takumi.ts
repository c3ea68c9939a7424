import { type Node, Renderer } from "@takumi-rs/core";
import type { RenderAssets, RenderEngine } from "./engine";
import type { FontFace } from "./fonts";
import { childrenOf, type El, type Style, textOf } from "./h";
import { createPngEncoder } from "./png";

const graphemes = new Intl.Segmenter("en", { granularity: "grapheme" });

const PICTOGRAPH = /^\p{Extended_Pictographic}/u;
const PRESENTATION = /^\p{Emoji_Presentation}/u;
const MODIFIED = /^\p{Emoji_Modifier_Base}\p{Emoji_Modifier}/u;
const FLAG = /^\p{Regional_Indicator}{2}$/u;
const KEYCAP = /^[#*0-9]\uFE0F?\u20E3$/u;
const MAYBE_EMOJI = /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20E3/u;

/** Graphemes drawn as emoji pictures: the ones with emoji presentation, as satori picks them. */
function isEmoji(grapheme: string): boolean {
  if (grapheme.includes("\uFE0E")) return false;
  if (FLAG.test(grapheme) || KEYCAP.test(grapheme)) return true;
  return (
    PICTOGRAPH.test(grapheme) &&
    (grapheme.includes("\uFE0F") ||
      grapheme.includes("\u200D") ||
      PRESENTATION.test(grapheme) ||
      MODIFIED.test(grapheme))
  );
}

// Sized as satori sizes them: one em square, sitting on the line like a capital.
const EMOJI_STYLE: Style = { display: "inline-block", width: "1em", height: "1em", verticalAlign: "-0.12em" };

/**
 * Text as takumi nodes: plain text stays one text node; emoji become inline images between text runs, in a
 * container that keeps the style, so clamping and wrapping treat them as part of the line.
 */
function textNode(text: string, style: Style | undefined, emoji: RenderAssets["emoji"]): Node {
  if (!MAYBE_EMOJI.test(text)) return { type: "text", text, style };
  const parts: Node[] = [];
  let run = "";
  for (const { segment } of graphemes.segment(text)) {
    const src = isEmoji(segment) ? emoji(segment) : undefined;
    if (!src) {
      run += segment;
      continue;
    }
    if (run) parts.push({ type: "text", text: run });
    run = "";
    parts.push({ type: "image", src, style: EMOJI_STYLE });
  }
  if (run) parts.push({ type: "text", text: run });
  return { type: "container", style, children: parts };
}

/** The template tree (satori's shape: div, img, span with React-like props) as a takumi node tree. */
function toNode(el: El, emoji: RenderAssets["emoji"]): Node {
  const { style } = el.props;
  if (el.type === "img") {
    return { type: "image", src: el.props.src ?? "", width: el.props.width, height: el.props.height, style };
  }
  const children = childrenOf(el);
  if (children.length > 0 && children.every((c) => typeof c === "string" || typeof c === "number"))
    return textNode(children.join(""), style, emoji);
  return {
    type: "container",
    style,
    children: children.map((c) =>
      typeof c === "object" && c ? toNode(c, emoji) : textNode(String(c), undefined, emoji),
    ),
  };
}

/**
 * Takumi (a Rust renderer of node trees, no browser) draws the same templates with the same fonts, emoji
 * and avatars. Faces are registered once per renderer, each under its family with its code point ranges, the
 * way a browser reads fontsource's `@font-face` rules.
 *
 * It hands back raw pixels, which png.ts encodes as it does satori's: takumi's own PNG encoder cost the poll
 * card 6-11 ms of CPU (more than laying out and drawing it, ~3-5 ms) for 51 KB, png.ts ~2.5 ms for 68 KB,
 * with the same pixels.
 */
export function createTakumiEngine(assets: RenderAssets): RenderEngine {
  const renderer = new Renderer();
  const encodePng = createPngEncoder();
  const registered = new Set<FontFace>();

  async function register(faces: readonly FontFace[]): Promise<void> {
    for (const face of faces) {
      if (registered.has(face)) continue;
      await renderer.registerFont({
        name: face.family,
        data: face.data,
        weight: face.weight,
        style: face.style,
        unicodeRange: face.ranges,
      });
      registered.add(face);
    }
  }

  /**
   * The card's node tree and its font stack: the base family, then the fallback families its text needs in
   * their order of preference. Takumi would otherwise fall back through every family registered so far in
   * the order they came, so a Japanese card's Han characters took Chinese shapes once a Chinese card had
   * been rendered first.
   */
  async function prepare(element: El): Promise<{ node: Node; fontFamilies: string[] }> {
    await register(assets.fonts);
    const faces = assets.fallbacks.facesFor(textOf(element));
    await register(faces);
    const fontFamilies = [...new Set([...assets.fonts, ...faces].map((face) => face.family))];
    return { node: toNode(element, assets.emoji), fontFamilies };
  }

  return {
    name: "takumi",
    async render(element, width, height, mark = () => {}) {
      const { node, fontFamilies } = await prepare(element);
      mark("nodes");
      const pixels = await renderer.render(node, { width, height, format: "raw", fontFamilies });
      mark("draw");
      const png = encodePng(pixels, width, height);
      mark("encode");
      return png;
    },
    async svg(element, width, height) {
      const { node, fontFamilies } = await prepare(element);
      return renderer.renderSvg(node, { width, height, fontFamilies });
    },
  };
}
