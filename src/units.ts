const UNITS = ["KiB", "MiB", "GiB", "TiB"] as const;

/**
 * A size as people read it: whole bytes below 1 KiB, else KiB, MiB, GiB or TiB with one decimal, so a table
 * of a few pages reads "48.0 KiB" rather than "0.0 MiB" and a 480 MB database "457.8 MiB".
 */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  // Just under a unit (1,048,575 bytes is 1023.999 KiB) would print "1024.0 KiB": name the next unit.
  if (value.toFixed(1) === "1024.0" && unit < UNITS.length - 1) {
    value = 1;
    unit++;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}
