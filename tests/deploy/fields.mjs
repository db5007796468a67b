// SPDX-License-Identifier: MIT
// fields.mjs OUT.ts FILE... — the unknown-field check of scripts/deploy-validate.sh.
//
// The Kubernetes OpenAPI schemas accept properties they do not define, so a misspelt
// optional field (`initalDelaySeconds`) passes validate.mjs. The models' TypeScript
// declarations list every field: each rendered object becomes a typed object literal, and
// TypeScript's excess-property check (tsc --noEmit) reports any field its type does not
// have, and any value of the wrong type. Objects of the operators without a model package
// are left out (see validate.mjs). A comment line names each object for the error report.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const modelPackages = {
  'networking.istio.io': '@kubernetes-models/istio',
  'security.istio.io': '@kubernetes-models/istio',
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
};
const [out, ...files] = process.argv.slice(2);
const aliases = new Map();
const body = [];
let n = 0;
for (const file of files) {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    const o = doc.toJS();
    if (!o || typeof o.apiVersion !== 'string' || typeof o.kind !== 'string') continue;
    const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
    const core = group === '' || group.endsWith('.k8s.io') || !group.includes('.');
    const pkg = modelPackages[group] || (core ? 'kubernetes-models' : null);
    if (!pkg) continue;
    const mod = `${pkg}/${o.apiVersion}/${o.kind}`;
    if (!aliases.has(mod)) aliases.set(mod, `T${aliases.size}`);
    body.push(`// OBJECT ${file}: ${o.kind}/${o.metadata?.name}`);
    body.push(`export const o${n++}: ${aliases.get(mod)} = ${JSON.stringify(o, null, 1)};`);
  }
}
const head = [...aliases].map(([m, a]) => `import type { I${m.split('/').pop()} as ${a} } from "${m}";`);
writeFileSync(out, [...head, ...body, ''].join('\n'));
console.log(`${n} objects typed`);
