/**
 * A satori element tree as plain objects, so templates need no JSX build step. Satori reads only `type` and
 * `props` (with `style` and `children`), the same shape React elements have.
 */

export type Style = Record<string, string | number>;

export type Child = El | string | number | null | undefined | false;

export interface El {
  type: "div" | "img" | "span";
  props: { style?: Style; children?: Child | Child[]; src?: string; width?: number; height?: number };
}

/**
 * A `div`: flex and border-box unless `style` says otherwise (satori follows CSS defaults: block, content-box).
 * Text children render as text, element children as items.
 */
export function div(style: Style, ...children: Child[]): El {
  return {
    type: "div",
    props: {
      style: { display: "flex", boxSizing: "border-box", ...style },
      children: children.length === 1 ? children[0] : children,
    },
  };
}

export function img(src: string, width: number, height: number, style: Style = {}): El {
  return { type: "img", props: { src, width, height, style } };
}

/** An element's children as a list, without the ones that render nothing. */
export function childrenOf(el: El): Child[] {
  const { children } = el.props;
  return (Array.isArray(children) ? children : [children]).filter(
    (c) => c !== null && c !== undefined && c !== false,
  );
}

/** All the text in a tree, to find the fallback fonts a card needs before it is laid out. */
export function textOf(el: El): string {
  return childrenOf(el)
    .map((c) => (typeof c === "object" && c ? textOf(c) : String(c)))
    .join(" ");
}
