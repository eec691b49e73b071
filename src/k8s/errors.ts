/** The HTTP status of a failed Kubernetes API call (404, 409, ...), if it was one. */
export const apiStatus = (error: unknown): number | undefined => (error as { code?: number }).code;

/** A write (most often a delete) to an object that is gone already has nothing left to do: its 404 is not an error. */
export async function ignoreNotFound(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (error) {
    if (apiStatus(error) !== 404) throw error;
  }
}

/** The message of an API error: its Status body's, else the error's own. */
export function apiErrorMessage(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  if (typeof body === "string") {
    try {
      return String((JSON.parse(body) as { message?: string }).message ?? body);
    } catch {
      return body;
    }
  }
  return error instanceof Error ? error.message : String(error);
}
