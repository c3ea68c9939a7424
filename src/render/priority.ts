import { readdirSync, readFileSync } from "node:fs";
import { setPriority } from "node:os";

/**
 * On Linux setpriority(0) applies to the calling thread only: a niced render thread yields the core to the
 * HTTP event loop whenever both want it, which keeps request latency flat during a render burst. Elsewhere
 * it would nice the whole process, so it is skipped.
 */
export function lowerThreadPriority(nice: number): void {
  if (process.platform !== "linux" || nice === 0) return;
  try {
    setPriority(0, nice);
  } catch {
    // not permitted here (e.g. a seccomp profile); rendering works the same, just less politely
  }
}

/**
 * Nices the threads of this process whose name matches `name`, once each (Linux only). Takumi renders on
 * Bun's native work pool ("Bun Pool N" threads), not on the worker thread that asked, so niceing the worker
 * alone would leave its rasterising at the event loop's priority. Those pool threads also run Bun's other
 * background work (file reads, compression); at nice 10 they still get the CPU whenever the event loop
 * does not want it. Cheap when nothing changed: one directory read.
 */
export function createThreadNicer(name: RegExp, nice: number): () => void {
  if (process.platform !== "linux" || nice === 0) return () => {};
  const done = new Set<string>();
  let known = 0;
  return () => {
    let tids: string[];
    try {
      tids = readdirSync("/proc/self/task");
    } catch {
      return;
    }
    if (tids.length === known) return;
    known = tids.length;
    for (const tid of tids) {
      if (done.has(tid)) continue;
      try {
        if (name.test(readFileSync(`/proc/self/task/${tid}/comm`, "utf8"))) setPriority(Number(tid), nice);
        done.add(tid);
      } catch {
        // the thread ended, or niceing is not permitted: nothing to do
      }
    }
  };
}
