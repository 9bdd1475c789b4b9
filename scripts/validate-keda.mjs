// Validates the KEDA objects (keda.sh/v1alpha1) in YAML files against KEDA's own
// CustomResourceDefinition schemas, as @kubernetes-models/keda publishes them;
// kubernetes-validate knows only the built-in kinds.
//
// usage: node validate-keda.mjs NODE_MODULES_DIR FILE...
// (NODE_MODULES_DIR holds @kubernetes-models/keda and yaml: scripts/test.sh installs them.)
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
const load = (rel) => import(pathToFileURL(path.join(modules, rel)).href);
const YAML = await load("yaml/dist/index.js");
const models = await load("@kubernetes-models/keda/keda.sh/v1alpha1/index.js");

let failed = false;
let seen = 0;
for (const file of files) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))) {
    const obj = doc.toJS();
    if (!obj || !String(obj.apiVersion).startsWith("keda.sh/")) continue;
    seen += 1;
    const what = `${path.basename(file)}: ${obj.kind}/${obj.metadata?.name}`;
    const Model = models[obj.kind];
    if (!Model) {
      console.log(`FAIL ${what}: not a KEDA kind`);
      failed = true;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`ok   ${what}`);
    } catch (e) {
      console.log(`FAIL ${what}: ${e.message}`);
      failed = true;
    }
  }
}
if (seen === 0) {
  console.log("FAIL no KEDA object found");
  failed = true;
}
process.exit(failed ? 1 : 0);
