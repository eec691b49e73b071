import { strict as assert } from "node:assert";
import type * as k8s from "@kubernetes/client-node";
import { pino } from "pino";
import { A } from "../../../src/core/annotations.js";
import { parseFlag } from "../../../src/core/maintenance-flag.js";
import { fixedCache } from "../../support/fixed-cache.js";
import { flagShown, SidecarNudge } from "../../../src/maintenance/sidecar-nudge.js";


const deployment = (name: string, sidecar: boolean): k8s.V1Deployment => ({
  metadata: { name, namespace: "shop", annotations: sidecar ? { [A.sidecar]: "8080" } : {} },
  spec: { selector: { matchLabels: { app: name } }, template: {} },
});
const pod = (name: string, app: string, extra: Partial<k8s.V1ObjectMeta> = {}): k8s.V1Pod =>
  ({ metadata: { name, namespace: "shop", uid: `uid-${name}`, labels: { app }, ...extra } });

describe("nudging the sidecars' pods to re-read the maintenance flag", () => {
  it("changes what it writes when the flag turns on or off or its message changes, not with the progress", () => {
    const on = parseFlag({ enabled: "true", message: "back soon" });
    assert.notEqual(flagShown(on), flagShown(parseFlag({ enabled: "false", message: "back soon" })));
    assert.notEqual(flagShown(on), flagShown(parseFlag({ enabled: "true", message: "back at noon" })));
    assert.equal(flagShown(on), flagShown(parseFlag({ enabled: "true", message: "back soon", progress: JSON.stringify({ step: "migrate", steps: ["migrate"], startedAt: "x" }) })));
    assert.match(flagShown(on), /^on-[0-9a-f]{12}$/);
  });

  it("annotates each live pod of a Deployment with the sidecar, once per flag state", async () => {
    const patched: string[] = [];
    const core = { patchNamespacedPod: async ({ name, body }: { name: string; body: { metadata: { annotations: Record<string, string> } } }) => {
      patched.push(`${name}=${body.metadata.annotations[A.flagSeen]!.slice(0, 3)}`);
      return {} as k8s.V1Pod;
    } } as unknown as Pick<k8s.CoreV1Api, "patchNamespacedPod">;
    const pods = [pod("web-1", "web"), pod("web-2", "web"), pod("web-old", "web", { deletionTimestamp: new Date() }), pod("api-1", "api")];
    const nudge = new SidecarNudge(core, fixedCache(() => [deployment("web", true), deployment("api", false)]), fixedCache(() => pods), pino({ level: "silent" }));
    await nudge.nudge("shop", parseFlag({ enabled: "true" }));
    assert.deepEqual(patched.sort(), ["web-1=on-", "web-2=on-"]);
    await nudge.nudge("shop", parseFlag({ enabled: "true" }));
    assert.equal(patched.length, 2, "nothing new to tell");
    await nudge.nudge("shop", parseFlag({ enabled: "false" }));
    assert.deepEqual(patched.slice(2).sort(), ["web-1=off", "web-2=off"]);
  });

  it("says once that it may not patch pods, and goes on", async () => {
    const lines: string[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void lines.push(line) });
    const refused = Object.assign(new Error("forbidden"), { code: 403 });
    const core = { patchNamespacedPod: async () => { throw refused; } } as unknown as Pick<k8s.CoreV1Api, "patchNamespacedPod">;
    const nudge = new SidecarNudge(core, fixedCache(() => [deployment("web", true)]), fixedCache(() => [pod("web-1", "web"), pod("web-2", "web")]), log);
    await nudge.nudge("shop", parseFlag({ enabled: "true" }));
    await nudge.nudge("shop", parseFlag({ enabled: "false" }));
    assert.equal(lines.length, 1, lines.join(""));
    assert.match(lines[0]!, /may not patch pods in shop/);
  });
});
