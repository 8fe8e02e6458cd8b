// Validates ServiceMonitor and PrometheusRule objects against the prometheus-operator CRD
// schemas (compiled into @kubernetes-models/prometheus-operator, pinned in package.json).
// Those schemas check types, required fields, enums and patterns (e.g. a rule's `for`);
// like the API server's structural schemas they let unknown fields through (the server
// prunes them), so a misspelt optional field is not caught here.
//   node crds.mjs FILE.json   (a JSON array of {overlay, object}; validate.py writes it)
import { readFileSync } from "node:fs";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { PrometheusRule, ServiceMonitor };
let failed = 0;
for (const { overlay, object: obj } of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const name = `${overlay}: ${obj.kind}/${obj.metadata?.name}`;
  const Model = obj.apiVersion === "monitoring.coreos.com/v1" ? models[obj.kind] : undefined;
  if (!Model) {
    console.log(`ERROR ${name}: no CRD schema here for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`INFO ${name} passed against the prometheus-operator CRD schema`);
  } catch (e) {
    console.log(`ERROR ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
