import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../util/exec.js";
import { startDaemon, waitForDaemon } from "./daemon.js";
import type { NodeLayout } from "./node-layout.js";
import { CNI_BIN_DIR } from "./node-prereqs.js";

// The real node's own containerd: its root, state, socket and configuration live in the
// node's directory, so it never meets the system's containerd or Docker's.

const CRI = 'plugins."io.containerd.grpc.v1.cri"';

function config(layout: NodeLayout, sandboxImage: string): string {
  const q = JSON.stringify;
  return `version = 2
root = ${q(layout.containerdRoot)}
state = ${q(layout.containerdState)}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = ${q(layout.socket)}
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(layout.dir, "containerd", "opt"))}

[${CRI}]
  sandbox_image = ${q(sandboxImage)}
  # The VM's capability bounding set lacks CAP_SYS_RESOURCE, so the sandbox's
  # oom_score_adj of -998 cannot be set ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  # Network namespaces under our state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [${CRI}.cni]
    bin_dir = ${q(CNI_BIN_DIR)}
    conf_dir = ${q(layout.cniConfDir)}
  [${CRI}.containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [${CRI}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${CRI}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ${q(join(layout.containerdState, "runc"))}
  [${CRI}.registry]
    config_path = ${q(join(layout.dir, "containerd", "certs.d"))}
`;
}

/** `ctr` against the node's containerd, in the namespace the kubelet uses. */
export function ctr(layout: NodeLayout, args: string[], timeoutMs = 120_000): Promise<string> {
  return run("ctr", ["--address", layout.socket, "--namespace", "k8s.io", ...args], { timeoutMs }).then((r) => r.stdout);
}

export async function startContainerd(layout: NodeLayout, sandboxImage: string): Promise<void> {
  if (Buffer.byteLength(layout.socket) > 100) {
    throw new Error(`the real node's containerd socket path is too long for a unix socket (${layout.socket}); set SCHEMA_GATE_CACHE to a shorter directory`);
  }
  await mkdir(join(layout.dir, "containerd", "certs.d"), { recursive: true });
  await writeFile(layout.containerdConfig, config(layout, sandboxImage));
  await startDaemon({
    name: "containerd",
    dir: layout.dir,
    file: "containerd",
    args: ["--config", layout.containerdConfig],
    // Every image the node runs is imported; a pull would mean a manifest names an image
    // that was not built here. Pointing the proxy at a closed loopback port makes any
    // pull fail at once instead of reaching out to a registry.
    env: { ...process.env, HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", NO_PROXY: "" },
  });
  await waitForDaemon(layout.dir, "containerd", () => ctr(layout, ["version"], 5_000).then(() => true), {
    timeoutMs: 30_000,
    what: "the real node's containerd to answer",
  });
}

/** Imports an OCI layout tar so pods can use the image it names (imagePullPolicy: Never). */
export async function importImage(layout: NodeLayout, tar: string): Promise<void> {
  await ctr(layout, ["images", "import", tar], 300_000);
}
