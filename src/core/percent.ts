/** Percent-decoded text, or undefined when it is not valid percent-encoding (decodeURIComponent would throw). */
export function percentDecoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}
