import { deleteLocalCluster, startLocalCluster } from "./cluster.js";

// `npm run cluster:up` / `cluster:down`: the local cluster (kwok nodes and a real node) for development.
const command = process.argv[2];
if (command === "up") {
  const started = Date.now();
  const cluster = await startLocalCluster();
  const version = await cluster.kubectl(["version", "-o", "yaml"]);
  const server = /serverVersion:[\s\S]*?gitVersion: (\S+)/.exec(version)?.[1] ?? "unknown";
  console.log(`local cluster ready in ${((Date.now() - started) / 1000).toFixed(1)}s (Kubernetes ${server})`);
  console.log(`  export KUBECONFIG=${cluster.kubeconfig}`);
  console.log(`  kubectl get nodes   # fake kwok nodes; pods on them become Running and Ready`);
  if (cluster.realNode) {
    console.log(`  real node "${cluster.realNode.name}": pods with its nodeSelector and toleration really run (logs in ${cluster.realNode.dir})`);
  } else {
    console.log(`  no real node: ${cluster.realNodeProblem ?? "unknown reason"}`);
  }
  console.log(`  npm run cluster:down   # deletes it`);
} else if (command === "down") {
  await deleteLocalCluster();
  console.log("local cluster deleted");
} else {
  console.error("usage: tsx src/local/main.ts up|down");
  process.exit(2);
}
