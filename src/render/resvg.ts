import { dlopen, FFIType } from "bun:ffi";
import type * as ResvgJs from "@resvg/resvg-js";

/*
 * resvg-js, loaded once its allocator is configured: modules that rasterise import `Resvg` from here, never
 * from the package.
 */

/**
 * How long resvg-js's allocator keeps freed memory before handing it back to the OS, in milliseconds.
 *
 * resvg-js links its own mimalloc, which returns freed pages 10 ms after a free by default. Each card frees a
 * 3.84 MB canvas and a pixel copy, and satori then takes ~8-10 ms (more on a busy machine) to lay out the next
 * card, so the next canvas was faulted in afresh: ~1 000-2 000 page faults, several ms a card and far more
 * under load. Held for 100 ms, the same pages serve every render of a burst (~450-750 faults a card against
 * ~1 350 at 10 ms, and ~360-450 at a second). Longer costs memory: mimalloc hands pages back only as its
 * thread allocates again, so whatever was freed within the delay before a worker went idle stayed resident
 * (~300 MB after a soak at a second; none at 100 ms, with the pool replacing idle workers: RenderPool's
 * `recycleIdleMs`).
 */
export const RESVG_PURGE_DELAY_MS = 100;

/**
 * resvg-js's allocator settings, as mimalloc reads them from the environment: the purge delay above, and
 * freed pages handed back when a thread ends (RenderPool replaces idle workers so that their memory goes
 * back; without this, mimalloc keeps an ended thread's free pages for other threads, up to ~200 MB here).
 */
const SETTINGS: Record<string, string> = {
  MIMALLOC_PURGE_DELAY: String(RESVG_PURGE_DELAY_MS),
  MIMALLOC_ABANDONED_PAGE_PURGE: "1",
};

const LIBC: Partial<Record<NodeJS.Platform, string>> = { linux: "libc.so.6", darwin: "libc.dylib" };

const cString = (s: string) => Buffer.from(`${s}\0`);

/**
 * Sets resvg-js's allocator options in the C environment, where mimalloc reads them once, as resvg-js loads.
 * Bun's `process.env` does not reach the C environment, hence libc's `setenv`. An operator's own setting
 * wins; where libc cannot be reached (another C library, another platform) the allocator keeps its defaults.
 */
function setResvgAllocator(): void {
  const path = LIBC[process.platform];
  if (!path) return;
  try {
    const libc = dlopen(path, {
      setenv: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    });
    for (const [name, value] of Object.entries(SETTINGS)) {
      // Overwrites only an empty value, which mimalloc would read as its default.
      if (!process.env[name]) libc.symbols.setenv(cString(name), cString(value), 1);
    }
    libc.close();
  } catch {
    // not glibc (musl names libc differently): renders work the same, with more page faults
  }
}

setResvgAllocator();
// A require, not an import: Bun evaluates an imported CommonJS package while linking, before any module body
// (and so the setenv above) has run.
const resvgJs: typeof ResvgJs = require("@resvg/resvg-js");

export const Resvg = resvgJs.Resvg;
export type Resvg = ResvgJs.Resvg;
