/**
 * Seeded hostile inputs for the listeners: the same seed gives the same inputs, so a
 * failure found in CI is reproduced by running the suite again.
 */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Random = () => number;
const pick = <T>(rand: Random, items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;

const NASTY_STRINGS = [
  "", " ", "%", "%zz", "%E0%A4%A", "\u0000", "\uFFFF", "\uD800", "😀", "a".repeat(5000), "../../etc/passwd", "<script>alert(1)</script>",
  "${7*7}", "{{7*7}}", "'; DROP TABLE x; --", "\\", "\"", "null", "true", "-1", "1e309", "NaN", "0x10", "[]", "{}", "http://[", "//evil.example",
  "15", "15m", "1h30m", "999999h", "rollback", "hold", "true", "false", "[\"./migrate\"]", "[1,2]", "not json",
];

function randomValue(rand: Random, depth = 0): unknown {
  switch (Math.floor(rand() * 8)) {
    case 0: return null;
    case 1: return rand() < 0.5;
    case 2: return Math.floor(rand() * 2 ** 32) - 2 ** 31;
    case 3: return rand() * 1e12;
    case 4: return depth < 3 ? Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1)) : [];
    case 5: return depth < 3 ? { [pick(rand, NASTY_STRINGS)]: randomValue(rand, depth + 1) } : {};
    default: return pick(rand, NASTY_STRINGS);
  }
}

/** Every path to a value inside a JSON document, for picking one to change. */
function paths(value: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (value && typeof value === "object") {
    for (const [key, child] of Object.entries(value)) {
      if (out.length > 4000) break;
      paths(child, [...prefix, Array.isArray(value) ? Number(key) : key], out);
    }
  }
  return out;
}

/** A document with a few of its values deleted, replaced by values of another type, or given nasty strings. */
export function mutateJson(rand: Random, document: unknown): unknown {
  const copy = structuredClone(document) as Record<string, unknown>;
  const all = paths(copy).filter((p) => p.length > 0);
  const changes = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < changes; i++) {
    const path = pick(rand, all);
    let parent: any = copy;
    for (const key of path.slice(0, -1)) parent = parent?.[key];
    if (!parent || typeof parent !== "object") continue;
    const last = path.at(-1)!;
    const roll = rand();
    if (roll < 0.3) {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else if (roll < 0.7) parent[last] = randomValue(rand);
    else parent[last] = pick(rand, NASTY_STRINGS);
  }
  return copy;
}

/** The bytes of a request body: mostly a mutated document, sometimes cut short or raw noise. */
export function hostileBody(rand: Random, document: unknown): string | Buffer {
  const roll = rand();
  const text = JSON.stringify(mutateJson(rand, document));
  if (roll < 0.08) return text.slice(0, Math.floor(rand() * text.length));
  if (roll < 0.12) return Buffer.from(Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256)));
  if (roll < 0.14) return JSON.stringify(randomValue(rand));
  return text;
}

const METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "BREW", "get", ""];
const TARGETS = ["/", "/hello", "/.schema-gate/healthz", "/.schema-gate/x", "*", "http://[", "http://x/", "//evil.example/x", "/.//evil.example/x",
  "/?schema-gate-bypass=%", "/?schema-gate-bypass=%E0%A4%A", "/%", "/%00", "/a?b=%zz&c", `/${"a".repeat(9000)}`, "/\u00ff", "/ws", ""];
const HEADERS = ["Host", "Cookie", "X-Schema-Gate-Bypass", "Accept", "Content-Type", "Upgrade", "Connection", "X-Forwarded-Proto", "X-Forwarded-For", "Transfer-Encoding", "Expect"];
const HEADER_VALUES = [...NASTY_STRINGS, "schema-gate-bypass=%", "schema-gate-bypass=%zz; a=b", "websocket", "Upgrade", "application/json", "text/html", "https", "chunked", "100-continue", "*/*;q=x"];

/** A whole HTTP/1.1 request, ending with Connection: close, with hostile parts. */
export function hostileRequest(rand: Random): string {
  const method = pick(rand, METHODS);
  const target = pick(rand, TARGETS);
  const version = rand() < 0.9 ? "HTTP/1.1" : pick(rand, ["HTTP/1.0", "HTTP/2", "HTTP/9.9", "", "HTTP/1.1 extra"]);
  const lines = [`${method} ${target} ${version}`.trim()];
  const count = Math.floor(rand() * 6);
  for (let i = 0; i < count; i++) {
    const name = rand() < 0.9 ? pick(rand, HEADERS) : pick(rand, ["", " ", "X:Y", "Bad Header", "\u00e9"]);
    lines.push(`${name}: ${pick(rand, HEADER_VALUES)}`.replace(/[\r\n]/g, ""));
  }
  if (!lines.some((l) => /^host:/i.test(l))) lines.push("Host: shop.example");
  const body = rand() < 0.2 ? pick(rand, NASTY_STRINGS).replace(/[\r\n]/g, "") : "";
  if (body) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  lines.push("Connection: close");
  return `${lines.join("\r\n")}\r\n\r\n${body}`;
}
