/** CPU time of processes, read from /proc (Linux): what a benchmark's figures per operation are made of. */
import { readFileSync } from "node:fs";

/** CPU time (user + system, all threads) a process has used so far, in µs; null off Linux or once it is gone. */
export function cpuMicros(pid: number): number | null {
  try {
    // /proc/<pid>/stat: fields 14 and 15 (utime, stime), in clock ticks of 1/100 s, after the ")" of the name.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return null;
  }
}

/**
 * The CPU a changing set of processes used between `start()` and `stop()`, in µs: `pids()` is asked at both
 * ends, so a process that appeared in between (a pooled connection opened under load) counts from its birth.
 * Null when /proc cannot be read.
 */
export function cpuSpan(pids: () => Promise<number[]> | number[]) {
  const before = new Map<number, number>();
  return {
    async start(): Promise<void> {
      for (const pid of await pids()) {
        const us = cpuMicros(pid);
        if (us !== null) before.set(pid, us);
      }
    },
    async stop(): Promise<number | null> {
      let total = 0;
      let read = false;
      for (const pid of new Set([...before.keys(), ...(await pids())])) {
        const us = cpuMicros(pid);
        if (us === null) continue;
        read = true;
        total += us - (before.get(pid) ?? 0);
      }
      return read ? total : null;
    },
  };
}
