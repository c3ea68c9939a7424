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
