interface Parsed {
  numbers: number[];
  prerelease: string[];
}

// Plain integers ("42", "20240101") and semver with an optional leading "v" ("v1.4.0-rc.1").
const VERSION = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

function parse(text: string): Parsed | undefined {
  const match = VERSION.exec(text);
  if (!match) return undefined;
  const [, major, minor, patch, pre] = match;
  return {
    numbers: [major, minor, patch].map((n) => Number(n ?? 0)),
    prerelease: pre ? pre.split(".") : [],
  };
}

function comparePrerelease(a: string[], b: string[]): number {
  // A release sorts after its prereleases (semver §11).
  if (a.length === 0 || b.length === 0) return Math.sign(b.length - a.length);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x) ? Number(x) : undefined;
    const ny = /^\d+$/.test(y) ? Number(y) : undefined;
    if (nx !== undefined && ny !== undefined) {
      if (nx !== ny) return nx < ny ? -1 : 1;
    } else if (nx !== undefined) return -1;
    else if (ny !== undefined) return 1;
    else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * Orders two schema versions when both look numeric or semver; undefined when either is
 * an opaque label (then only equality means anything).
 */
export function compareVersions(a: string, b: string): number | undefined {
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return undefined;
  for (let i = 0; i < 3; i++) {
    const d = x.numbers[i]! - y.numbers[i]!;
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return comparePrerelease(x.prerelease, y.prerelease);
}
