import * as k8s from "@kubernetes/client-node";

/** A kubeconfig file when given, else in-cluster config, else the default loading rules. */
export function loadKubeConfig(file?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}
