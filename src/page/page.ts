import type { Flag } from "../core/maintenance-flag.js";

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** Whether the client asked for JSON rather than a page (API clients, `curl -H Accept:...`). */
export function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  const types = accept.split(",").map((part) => {
    const [type = "", ...params] = part.trim().toLowerCase().split(";");
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return { type: type.trim(), q: q ? Number(q.slice(2)) : 1 };
  });
  const best = (match: (type: string) => boolean) => Math.max(0, ...types.filter((t) => match(t.type)).map((t) => t.q));
  const json = best((t) => t === "application/json" || t.endsWith("+json"));
  const html = best((t) => t === "text/html" || t === "application/xhtml+xml");
  return json > 0 && json >= html;
}

export interface PageBody {
  status: "maintenance";
  message: string;
  retryAfterSeconds: number;
  since?: string;
  progress?: { version: string; step: string; index: number; of: number; startedAt: string };
}

export function pageJson(flag: Flag): PageBody {
  return {
    status: "maintenance",
    message: flag.message,
    retryAfterSeconds: flag.retryAfter,
    ...(flag.since ? { since: flag.since } : {}),
    ...(flag.progress ? { progress: flag.progress } : {}),
  };
}

const STEP_LABELS: Record<string, string> = {
  "maintenance-on": "Starting maintenance",
  quiesce: "Stopping services",
  drain: "Waiting for services to stop",
  terminate: "Closing database connections",
  migrate: "Upgrading the database",
  verify: "Checking the upgrade",
  restore: "Starting services",
  readiness: "Waiting for services to be ready",
  "maintenance-off": "Finishing",
  rollback: "Returning to the previous version",
};

function progressText(flag: Flag): string {
  const p = flag.progress;
  if (!p) return "";
  return `${STEP_LABELS[p.step] ?? p.step} (step ${p.index} of ${p.of})`;
}

/**
 * The maintenance page. A `page.html` in the flag replaces the built-in one; in it,
 * `{{message}}`, `{{progress}}` and `{{retryAfter}}` are replaced (escaped).
 */
export function pageHtml(flag: Flag): string {
  const message = escapeHtml(flag.message);
  const progress = escapeHtml(progressText(flag));
  if (flag.pageHtml) {
    return flag.pageHtml
      .replaceAll("{{message}}", message)
      .replaceAll("{{progress}}", progress)
      .replaceAll("{{retryAfter}}", String(flag.retryAfter));
  }
  const p = flag.progress;
  const percent = p ? Math.round((100 * Math.max(0, p.index - 1)) / Math.max(1, p.of)) : 0;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="${flag.retryAfter}">
<meta name="robots" content="noindex">
<title>Down for maintenance</title>
<style>
  :root { color-scheme: light dark; --fg: #1f2328; --muted: #59636e; --bg: #f6f8fa; --card: #fff; --accent: #2f6feb; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --card: #161b22; } }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg); color: var(--fg);
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
  main { width: min(36rem, calc(100% - 2rem)); background: var(--card); border-radius: 12px; padding: 2.5rem 2rem;
         box-shadow: 0 1px 3px rgba(0,0,0,.08), 0 8px 24px rgba(0,0,0,.06); }
  h1 { font-size: 1.5rem; margin: 0 0 .75rem; }
  p { margin: 0 0 1rem; }
  .muted { color: var(--muted); font-size: .9rem; }
  .bar { height: 6px; border-radius: 3px; background: rgba(127,127,127,.2); overflow: hidden; margin: 1.5rem 0 .5rem; }
  .bar > div { height: 100%; width: ${percent}%; background: var(--accent); }
</style>
</head>
<body>
<main>
  <h1>Down for maintenance</h1>
  <p id="message">${message}</p>
${p ? `  <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="${p.of}" aria-valuenow="${Math.max(0, p.index - 1)}"><div></div></div>
  <p class="muted" id="progress">${progress}</p>
` : ""}  <p class="muted">This page refreshes by itself every ${flag.retryAfter} seconds.</p>
</main>
</body>
</html>
`;
}
