import { strict as assert } from "node:assert";
import { CEL_EXPRESSION_LIMIT, scaleGuardExpression, SCALE_GUARD_BUDGET } from "../../../src/core/scale-guard.js";

const held = (count: number, namespaces: number) =>
  Array.from({ length: count }, (_, i) => `team-${String(i % namespaces).padStart(4, "0")}/deployment-number-${i}`).sort();

describe("scale guard expression", () => {
  it("lists the held Deployments exactly while that fits", () => {
    assert.equal(scaleGuardExpression([]), "request.namespace + '/' + request.name in []");
    assert.equal(scaleGuardExpression(["shop/api", "shop/web"]), "request.namespace + '/' + request.name in ['shop/api', 'shop/web']");
  });

  it("stays within the apiserver's limit for 5,000 held Deployments: their namespaces instead of their names", () => {
    const expression = scaleGuardExpression(held(5000, 300));
    assert.ok(expression.length <= SCALE_GUARD_BUDGET && SCALE_GUARD_BUDGET < CEL_EXPRESSION_LIMIT, `${expression.length} code points`);
    assert.match(expression, /^request\.namespace in \['team-0000', 'team-0001', /);
    assert.equal(expression.match(/'team-/g)?.length, 300, "each namespace once");
  });

  it("sends every scale request to the gate when even the namespaces do not fit, never a longer expression", () => {
    for (const count of [5000, 20_000, 50_000]) {
      const expression = scaleGuardExpression(held(count, count));
      assert.ok(expression.length <= SCALE_GUARD_BUDGET);
    }
    assert.equal(scaleGuardExpression(held(50_000, 50_000)), "true");
  });
});
