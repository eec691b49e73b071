/**
 * Credentials removed from text that came from a pod or the database (a Job's log tail,
 * an error message) before it is written into an object, an Event or the CLI's output:
 * migration tools like to print their connection URL.
 */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)[^\s@/]+@/gi;
const KEY_PASSWORD = /(["']?\b(?:password|passwd|pwd|pgpassword)\b["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&}]+)/gi;

export function maskCredentials(text: string): string {
  return text.replace(URL_PASSWORD, "$1***@").replace(KEY_PASSWORD, "$1***");
}
