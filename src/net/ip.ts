/**
 * IP address parsing and classification for the outbound URL guard. Addresses are parsed to bytes and
 * compared against CIDR ranges, so every spelling of an address (mapped, compressed, zero-padded) lands on
 * the same answer.
 */

/** Why an address is refused; `null` from {@link classifyIp} means it is public. */
export type BlockedRange =
  | "unspecified"
  | "loopback"
  | "private"
  | "link_local"
  | "cgnat"
  | "multicast"
  | "broadcast"
  | "reserved"
  | "unique_local"
  | "metadata";

interface Range {
  bytes: number[];
  prefix: number;
  kind: BlockedRange;
}

function v4(cidr: string, kind: BlockedRange): Range {
  const [addr, prefix] = cidr.split("/");
  return { bytes: parseIpv4(addr ?? "")!, prefix: Number(prefix), kind };
}

function v6(cidr: string, kind: BlockedRange): Range {
  const [addr, prefix] = cidr.split("/");
  return { bytes: parseIpv6(addr ?? "")!, prefix: Number(prefix), kind };
}

// Order matters: the first match names the reason, so the specific metadata address precedes link-local.
const IPV4_RANGES: Range[] = [
  v4("169.254.169.254/32", "metadata"),
  v4("0.0.0.0/8", "unspecified"),
  v4("10.0.0.0/8", "private"),
  v4("100.64.0.0/10", "cgnat"),
  v4("127.0.0.0/8", "loopback"),
  v4("169.254.0.0/16", "link_local"),
  v4("172.16.0.0/12", "private"),
  v4("192.0.0.0/24", "reserved"),
  v4("192.0.2.0/24", "reserved"),
  v4("192.168.0.0/16", "private"),
  v4("198.18.0.0/15", "reserved"),
  v4("198.51.100.0/24", "reserved"),
  v4("203.0.113.0/24", "reserved"),
  v4("224.0.0.0/4", "multicast"),
  v4("255.255.255.255/32", "broadcast"),
  v4("240.0.0.0/4", "reserved"),
];

const IPV6_RANGES: Range[] = [
  v6("fd00:ec2::254/128", "metadata"),
  v6("::/128", "unspecified"),
  v6("::1/128", "loopback"),
  v6("100::/64", "reserved"),
  v6("2001::/32", "reserved"), // Teredo: tunnels to an IPv4 address we cannot vet
  v6("2001:db8::/32", "reserved"),
  v6("fc00::/7", "unique_local"),
  v6("fe80::/10", "link_local"),
  v6("fec0::/10", "link_local"),
  v6("ff00::/8", "multicast"),
];

/** IPv6 prefixes that carry an IPv4 address in their last 4 bytes (or bytes 2–5 for 6to4). */
const EMBEDDED_V4: Array<{ range: Range; offset: number }> = [
  { range: v6("::ffff:0:0/96", "reserved"), offset: 12 }, // IPv4-mapped
  { range: v6("::/96", "reserved"), offset: 12 }, // IPv4-compatible (deprecated)
  { range: v6("64:ff9b::/96", "reserved"), offset: 12 }, // NAT64
  { range: v6("64:ff9b:1::/48", "reserved"), offset: 12 }, // local-use NAT64
  { range: v6("2002::/16", "reserved"), offset: 2 }, // 6to4
];

/** Strict dotted-quad IPv4 (the canonical form URL parsing and resolvers produce). */
export function parseIpv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    bytes.push(n);
  }
  return bytes;
}

/** IPv6 text (compressed, with an optional trailing dotted quad, without brackets or zone) to 16 bytes. */
export function parseIpv6(text: string): number[] | null {
  const halves = text.toLowerCase().split("::");
  if (halves.length > 2) return null;
  const head = groupsOf(halves[0] ?? "");
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? "") : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...Array<number>(missing).fill(0), ...tail];
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

function groupsOf(part: string): number[] | null {
  if (part === "") return [];
  const pieces = part.split(":");
  const groups: number[] = [];
  for (const [i, piece] of pieces.entries()) {
    if (i === pieces.length - 1 && piece.includes(".")) {
      const quad = parseIpv4(piece);
      if (!quad) return null;
      groups.push((quad[0]! << 8) | quad[1]!, (quad[2]! << 8) | quad[3]!);
    } else if (/^[0-9a-f]{1,4}$/.test(piece)) {
      groups.push(Number.parseInt(piece, 16));
    } else {
      return null;
    }
  }
  return groups;
}

function inRange(bytes: number[], range: Range): boolean {
  if (bytes.length !== range.bytes.length) return false;
  let bits = range.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[i]! & mask) !== (range.bytes[i]! & mask)) return false;
  }
  return true;
}

function classifyBytes(bytes: number[]): BlockedRange | null {
  if (bytes.length === 4) return IPV4_RANGES.find((r) => inRange(bytes, r))?.kind ?? null;
  const direct = IPV6_RANGES.find((r) => inRange(bytes, r));
  if (direct) return direct.kind;
  for (const { range, offset } of EMBEDDED_V4) {
    if (inRange(bytes, range)) return classifyBytes(bytes.slice(offset, offset + 4));
  }
  return null;
}

/** Strips URL brackets and an IPv6 zone id (`fe80::1%eth0`). */
function bareAddress(text: string): string {
  const unbracketed = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const zone = unbracketed.indexOf("%");
  return zone === -1 ? unbracketed : unbracketed.slice(0, zone);
}

/** Parses an IPv4 or IPv6 literal (brackets allowed); null when the text is not an IP address. */
export function parseIp(text: string): number[] | null {
  const bare = bareAddress(text);
  return bare.includes(":") ? parseIpv6(bare) : parseIpv4(bare);
}

/**
 * The blocked range an IP literal falls in, or null when it is publicly routable.
 * Text that is not an IP address at all is "reserved": callers only pass resolver output and URL hosts.
 */
export function classifyIp(text: string): BlockedRange | null {
  const bytes = parseIp(text);
  return bytes ? classifyBytes(bytes) : "reserved";
}
