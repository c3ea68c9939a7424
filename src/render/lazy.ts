import { RenderPool, type RenderPoolOptions } from "./pool";
import type { RenderedCard } from "./render";

/**
 * The card render pool, started on first use: CLI commands build every service but most never render,
 * and worker threads are not free.
 */
export type LazyRenderer = {
  render(template: string, data: unknown): Promise<RenderedCard>;
  /** Throws when the started pool is unhealthy; a pool not started yet is healthy. */
  check(): void;
  close(): Promise<void>;
};

/** `observe` gets each render's wall time in milliseconds (the metrics histogram). */
export function lazyRenderPool(opts: RenderPoolOptions, observe: (ms: number) => void): LazyRenderer {
  let pool: RenderPool | null = null;
  const get = () => {
    pool ??= new RenderPool(opts);
    return pool;
  };
  return {
    render: async (template, data) => {
      const started = performance.now();
      const card = await get().render(template, data);
      observe(performance.now() - started);
      return card;
    },
    check: () => pool?.check(),
    close: async () => {
      await pool?.close();
      pool = null;
    },
  };
}
