/**
 * When a render thread asks for a garbage collection.
 *
 * Each card leaves native memory behind its JavaScript wrappers: resvg's 3.84 MB canvas and the copy of its
 * pixels, or takumi's 3.84 MB of pixels, for 1200x800. The GC does not know their size and so does not hurry
 * to collect the wrappers: without a collection now and then a busy worker's RSS grows by hundreds of MB.
 * A collection after every card cost more than it saves, though: ~2 ms of CPU a card on satori's heap, ~1.5 ms
 * on takumi's (15 % of a takumi card), measured in one thread against none (docs/BENCHMARKS.md). So a worker
 * collects after every {@link CollectorOptions.every}th card, which bounds what it holds to that many cards'
 * buffers, and once it has been idle for {@link CollectorOptions.idleMs}, so nothing lingers after a burst.
 */

import type { EngineName } from "./engine";

/**
 * Cards a worker renders between collections. Each satori card leaves two 3.84 MB buffers (resvg's canvas and
 * the pixels copied out of it), each takumi card one, so 4 and 8 cards both hold ~32 MB at most.
 */
export function cardsBetweenCollections(engine: EngineName): number {
  return engine === "takumi" ? 8 : 4;
}

export interface CollectorOptions {
  /** Cards between collections. @defaultValue 4 */
  every?: number;
  /** Idle time after the last card before a collection. @defaultValue 200 ms */
  idleMs?: number;
  /** Starts a collection. @defaultValue `Bun.gc(false)`: asynchronous, so the next card is not delayed */
  collect?: () => void;
}

/** Returns the function a render thread calls after each card. */
export function createCollector(opts: CollectorOptions = {}): () => void {
  const every = opts.every ?? 4;
  const idleMs = opts.idleMs ?? 200;
  const collect = opts.collect ?? (() => Bun.gc(false));
  let since = 0;
  let idle: ReturnType<typeof setTimeout> | undefined;
  const run = () => {
    clearTimeout(idle);
    idle = undefined;
    since = 0;
    collect();
  };
  return () => {
    if (++since >= every) return run();
    clearTimeout(idle);
    idle = setTimeout(run, idleMs);
    // An idle collection never keeps a thread alive that has nothing else to do.
    idle.unref?.();
  };
}
