import { request, type IncomingHttpHeaders } from "node:http";

// HTTP probes of a service from the host: one GET, a poll that records outcomes, their summary.

export interface Answer {
  status: number;
  body: any;
  headers: IncomingHttpHeaders;
}

/** GET over a fresh connection (no keep-alive, so each request is balanced anew). */
export function get(host: string, port: number, path: string, timeoutMs = 10_000, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => {
        const answer = { status: res.statusCode ?? 0, headers: res.headers };
        try {
          resolve({ ...answer, body: JSON.parse(body) });
        } catch {
          resolve({ ...answer, body });
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET http://${host}:${port}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

export interface Poll {
  at: number;
  outcome: string;
}

/** Calls `probe` every `everyMs` (one at a time) until stopped; records each outcome it names. */
export function pollEvery(probe: () => Promise<string>, everyMs = 100): { stop: () => Promise<Poll[]> } {
  const polls: Poll[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      polls.push({ at, outcome: await probe() });
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, everyMs - (Date.now() - at))));
    }
  })();
  return { stop: async () => ((running = false), await loop, polls) };
}

/** Runs of the same outcome, e.g. "version 1 x31, ECONNREFUSED x40, version 2 x12". */
export function runs(polls: Poll[]): string {
  const out: Array<{ outcome: string; n: number }> = [];
  for (const { outcome } of polls) {
    const last = out[out.length - 1];
    if (last?.outcome === outcome) last.n++;
    else out.push({ outcome, n: 1 });
  }
  return out.map((r) => `${r.outcome} x${r.n}`).join(", ");
}

/** What answered a request (for JSON): a shop service's version, the maintenance page (503, Retry-After), or anything else. */
export function answerKind(a: Answer): string {
  if (a.status === 200 && typeof a.body === "object" && a.body.version) return `app ${a.body.version}`;
  if (a.status === 503 && /^\d+$/.test(String(a.headers["retry-after"])) && a.body?.status === "maintenance") return "page";
  return `other HTTP ${a.status}`;
}
