// `npm run demo` will run the whole story on the local cluster (see README, "Status").
// Until the window controller lands it says so instead of pretending.
console.log(
  [
    "schema-gate demo: not ready yet.",
    "The admission webhook works today; the migration window controller and the maintenance",
    "page are being built. Meanwhile:",
    "  npm run cluster:up     # the local Kubernetes control plane the demo will use",
    "  npm test               # what works, proven against it",
  ].join("\n"),
);
process.exitCode = 0;
