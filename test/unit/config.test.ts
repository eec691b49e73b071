import { strict as assert } from "node:assert";
import { readServeConfig } from "../../src/config.js";

describe("serve configuration: the maintenance backend's placement", () => {
  const placement = { nodeSelector: { pool: "web" }, tolerations: [{ key: "pool", operator: "Equal", value: "web", effect: "NoSchedule" }] };

  it("is empty unless given, and read from the flag or SCHEMA_GATE_BACKEND_PLACEMENT", () => {
    assert.deepEqual(readServeConfig({}, {}).backendPlacement, {});
    assert.deepEqual(readServeConfig({ backendPlacement: JSON.stringify(placement) }, {}).backendPlacement, placement);
    assert.deepEqual(readServeConfig({}, { SCHEMA_GATE_BACKEND_PLACEMENT: JSON.stringify(placement) }).backendPlacement, placement);
  });

  const refused: Array<[string, string, RegExp]> = [
    ["text that is not JSON", "pool=web", /"pool=web" is not JSON/],
    ["a list", "[]", /not a JSON object/],
    ["a key other than nodeSelector and tolerations", '{"affinity":{}}', /unknown key "affinity"/],
    ["a nodeSelector with a number", '{"nodeSelector":{"pool":1}}', /nodeSelector must map label keys to string values/],
    ["tolerations that are not a list of objects", '{"tolerations":"pool"}', /tolerations must be a list/],
  ];
  for (const [what, text, message] of refused) {
    it(`refuses ${what}, naming the flag and an example`, () =>
      assert.throws(() => readServeConfig({ backendPlacement: text }, {}), (e: Error) =>
        message.test(e.message) && e.message.startsWith("--backend-placement: ") && e.message.includes('"nodeSelector":{"pool":"web"}')));
  }
});

describe("serve configuration: how long Ingress controllers get to follow a switch", () => {
  it("is 2 s unless given; a fraction is kept", () => {
    assert.equal(readServeConfig({}, {}).ingressPropagationSeconds, 2);
    assert.equal(readServeConfig({ ingressPropagation: "0.5" }, {}).ingressPropagationSeconds, 0.5);
    assert.equal(readServeConfig({ ingressPropagation: "0" }, {}).ingressPropagationSeconds, 0);
  });

  it("refuses what is not a non-negative number, naming the flag", () => {
    assert.throws(() => readServeConfig({ ingressPropagation: "2s" }, {}), /--ingress-propagation: "2s" is not a non-negative number/);
  });
});
