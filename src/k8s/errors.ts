/** The HTTP status of a failed Kubernetes API call (404, 409, ...), if it was one. */
export const apiStatus = (error: unknown): number | undefined => (error as { code?: number }).code;
