import { Agent } from "node:https";
import * as k8s from "@kubernetes/client-node";

/** How many keep-alive agents one KubeConfig keeps (a new one per change of TLS settings, e.g. a rotated client certificate). */
const AGENTS_KEPT = 4;
const IDLE_CLOSE_MS = 30_000;

/**
 * A KubeConfig whose API calls share connections. client-node 1.x gives every call a new
 * https.Agent, so each request opens a TCP connection and does a TLS handshake of its own,
 * on both ends: a LIST on an idle local apiserver took 8.5 ms that way and 2 ms over a kept
 * connection, and far more on a busy machine. Every call with the same TLS settings gets
 * one keep-alive agent instead; a request behind a proxy keeps the agent it was given.
 */
export class SharedConnections extends k8s.KubeConfig {
  private readonly agents = new Map<string, Agent>();

  override async applySecurityAuthentication(context: k8s.RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const given = context.getAgent();
    if (given?.constructor !== Agent || this.getCurrentCluster()?.proxyUrl) return;
    const options = (given as Agent).options;
    const text = (value: unknown) => (value === undefined ? "" : String(value));
    const key = [options.ca, options.cert, options.key, options.pfx, options.passphrase, options.rejectUnauthorized, options.servername].map(text).join("\u0000");
    let agent = this.agents.get(key);
    if (!agent) {
      // Idle connections close well before the apiserver's own idle timeout (90 s), so none is reused as it closes.
      agent = new Agent({ ...options, keepAlive: true, timeout: IDLE_CLOSE_MS });
      this.agents.set(key, agent);
      // The oldest settings' agent is let go; its idle connections close with their timeout.
      if (this.agents.size > AGENTS_KEPT) this.agents.delete(this.agents.keys().next().value!);
    }
    context.setAgent(agent);
  }
}

/** A kubeconfig file when given, else in-cluster config, else the default loading rules. */
export function loadKubeConfig(file?: string): k8s.KubeConfig {
  const kc = new SharedConnections();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}
