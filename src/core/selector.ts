/** A Kubernetes LabelSelector (matchLabels and matchExpressions). */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/**
 * Whether labels satisfy a selector, as the apiserver decides it. An empty selector
 * matches nothing here: a Deployment always has one, and matching every pod would be
 * the dangerous reading.
 */
export function matchesSelector(labels: Record<string, string> | undefined, selector: LabelSelector | undefined): boolean {
  const own = labels ?? {};
  const pairs = Object.entries(selector?.matchLabels ?? {});
  const expressions = selector?.matchExpressions ?? [];
  if (pairs.length === 0 && expressions.length === 0) return false;
  if (!pairs.every(([key, value]) => own[key] === value)) return false;
  return expressions.every(({ key, operator, values = [] }) => {
    const has = Object.hasOwn(own, key);
    switch (operator) {
      case "In":
        return has && values.includes(own[key]!);
      case "NotIn":
        return !has || !values.includes(own[key]!);
      case "Exists":
        return has;
      case "DoesNotExist":
        return !has;
      default:
        return false;
    }
  });
}
