import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createSecureContext } from "node:tls";
import type { Logger } from "../logger.js";

export interface KeyPair {
  cert: string;
  key: string;
}

/**
 * The serving certificate, re-read when its files change (a renewed cert-manager Secret
 * is swapped in by the kubelet through a symlink, which file watchers often miss, so
 * this polls the content). A pair that does not load is ignored and the old one kept.
 */
export class CertificateSource {
  private current: KeyPair | undefined;
  private fingerprint = "";
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    private readonly log: Logger,
  ) {}

  /** Reads the files; resolves to the new pair when it changed and is usable. */
  async reload(): Promise<KeyPair | undefined> {
    let pair: KeyPair;
    try {
      pair = { cert: await readFile(this.certFile, "utf8"), key: await readFile(this.keyFile, "utf8") };
    } catch (error) {
      if (!this.current) this.log.warn({ err: error }, "serving certificate not readable yet");
      return undefined;
    }
    const fingerprint = createHash("sha256").update(pair.cert).update(pair.key).digest("hex");
    if (fingerprint === this.fingerprint) return undefined;
    try {
      createSecureContext(pair); // throws on a malformed or mismatched pair (mid-rotation)
    } catch (error) {
      this.log.warn({ err: error, certFile: this.certFile }, "serving certificate does not load; keeping the previous one");
      return undefined;
    }
    this.fingerprint = fingerprint;
    this.current = pair;
    return pair;
  }

  get pair(): KeyPair | undefined {
    return this.current;
  }

  healthy(): boolean {
    return this.current !== undefined;
  }

  watch(onChange: (pair: KeyPair) => void, intervalMs = 1000): void {
    this.timer = setInterval(() => {
      void this.reload().then((pair) => {
        if (pair) {
          this.log.info({ certFile: this.certFile }, "serving certificate reloaded");
          onChange(pair);
        }
      });
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
