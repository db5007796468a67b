// SPDX-License-Identifier: MIT
// validate.mjs — offline checks of the rendered Kubernetes manifests (scripts/deploy-validate.sh).
//
//   node tests/deploy/validate.mjs OVERLAY=FILE... [--rules-out FILE] [--metrics FILE]
//
// 1. Every object validates against its schema: the Kubernetes API (npm kubernetes-models),
//    Istio and the Prometheus Operator (@kubernetes-models/istio, /prometheus-operator).
//    The data-layer operators (CloudNativePG, Strimzi, Redis Operator, Percona MongoDB) have
//    no model package: their objects get the structural checks below, written from the
//    operators' documentation (required fields, types of the fields used), and are counted
//    apart in the summary.
// 2. The references inside the rendering: selectors match pod labels, Services, ConfigMaps,
//    Secrets, HPA targets, Ingress backends, ServiceMonitor ports, DestinationRule subsets.
// 3. The seed's numbers: HPA ranges and targets, probes, resources, replicas, drain times,
//    Kafka, PostgreSQL, Redis and MongoDB sizes.
// 4. With --metrics FILE (a scrape of a live `emporium serve`): every emporium_* metric the
//    Grafana dashboard and the PrometheusRule use is one the binary serves.
// Prints one line per failure and "N passed, M failed"; exit 1 on any failure.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const args = process.argv.slice(2);
const overlays = [];
let rulesOut = null;
let metricsFile = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--rules-out') rulesOut = args[++i];
  else if (args[i] === '--metrics') metricsFile = args[++i];
  else {
    const eq = args[i].indexOf('=');
    if (eq < 1) {
      console.error(`usage: validate.mjs OVERLAY=FILE... [--rules-out FILE] [--metrics FILE]`);
      process.exit(2);
    }
    overlays.push({ name: args[i].slice(0, eq), file: args[i].slice(eq + 1) });
  }
}

const isObj = (v) => v && typeof v === 'object' && !Array.isArray(v);
let passed = 0;
let failed = 0;
const unmodelled = new Map();
function ok(cond, what) {
  if (cond) passed++;
  else {
    failed++;
    console.log(`FAIL ${what}`);
  }
  return cond;
}
// JSON with sorted keys: {a, b} and {b, a} are the same object.
const canon = (v) => JSON.stringify(v, (k, x) =>
  isObj(x) ? Object.fromEntries(Object.keys(x).sort().map((key) => [key, x[key]])) : x);
const eq = (got, want, what) =>
  ok(canon(got) === canon(want),
    `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);

// --- 1. schemas -----------------------------------------------------------------------
const modelPackages = {
  'networking.istio.io': '@kubernetes-models/istio',
  'security.istio.io': '@kubernetes-models/istio',
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
};
// Groups without a model package: checked by operatorChecks below.
const operatorGroups = new Set([
  'postgresql.cnpg.io', 'kafka.strimzi.io', 'redis.redis.opstreelabs.in', 'psmdb.percona.com',
]);

async function modelFor(apiVersion, kind) {
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const pkg = modelPackages[group] || 'kubernetes-models';
  if (pkg === 'kubernetes-models' && group.includes('.') && !group.endsWith('.k8s.io'))
    return null;
  try {
    const mod = await import(`${pkg}/${apiVersion}/${kind}`);
    return mod[kind] || null;
  } catch {
    return null;
  }
}

const isStr = (v) => typeof v === 'string' && v.length > 0;
const isInt = (v) => Number.isInteger(v);
const quantity = (v) => (typeof v === 'string' && /^[0-9.]+(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.test(v)) || isInt(v);

// Written from each operator's documented API; each returns a list of problems.
const operatorChecks = {
  'postgresql.cnpg.io/v1/Cluster': (o) => [
    !isInt(o.spec?.instances) && 'spec.instances must be an integer',
    !isObj(o.spec?.storage) && 'spec.storage is required',
    o.spec?.storage && !quantity(o.spec.storage.size) && 'spec.storage.size must be a quantity',
    o.spec?.postgresql?.parameters &&
      Object.values(o.spec.postgresql.parameters).some((v) => typeof v !== 'string') &&
      'spec.postgresql.parameters values must be strings',
    o.spec?.backup && !isStr(o.spec.backup.barmanObjectStore?.destinationPath) &&
      'spec.backup.barmanObjectStore.destinationPath is required',
  ],
  'postgresql.cnpg.io/v1/Pooler': (o) => [
    !isStr(o.spec?.cluster?.name) && 'spec.cluster.name is required',
    !['rw', 'ro'].includes(o.spec?.type) && 'spec.type must be rw or ro',
    !['session', 'transaction'].includes(o.spec?.pgbouncer?.poolMode) &&
      'spec.pgbouncer.poolMode must be session or transaction',
    o.spec?.pgbouncer?.parameters &&
      Object.values(o.spec.pgbouncer.parameters).some((v) => typeof v !== 'string') &&
      'spec.pgbouncer.parameters values must be strings',
  ],
  'postgresql.cnpg.io/v1/ScheduledBackup': (o) => [
    !isStr(o.spec?.cluster?.name) && 'spec.cluster.name is required',
    !(isStr(o.spec?.schedule) && o.spec.schedule.trim().split(/\s+/).length === 6) &&
      'spec.schedule must be a six-field cron expression (seconds first)',
  ],
  'kafka.strimzi.io/v1beta2/Kafka': (o) => [
    !isObj(o.spec?.kafka) && 'spec.kafka is required',
    !Array.isArray(o.spec?.kafka?.listeners) && 'spec.kafka.listeners is required',
    (o.spec?.kafka?.listeners || []).some((l) => !isStr(l.name) || !isInt(l.port) ||
      !['internal', 'route', 'loadbalancer', 'nodeport', 'ingress', 'cluster-ip'].includes(l.type) ||
      typeof l.tls !== 'boolean') && 'every listener needs name, port, type and tls',
  ],
  'kafka.strimzi.io/v1beta2/KafkaNodePool': (o) => [
    !isInt(o.spec?.replicas) && 'spec.replicas must be an integer',
    !(Array.isArray(o.spec?.roles) && o.spec.roles.every((r) => ['broker', 'controller'].includes(r))) &&
      'spec.roles must list broker and/or controller',
    !isObj(o.spec?.storage) && 'spec.storage is required',
    !isStr(o.metadata?.labels?.['strimzi.io/cluster']) && 'the strimzi.io/cluster label is required',
  ],
  'kafka.strimzi.io/v1beta2/KafkaTopic': (o) => [
    !isInt(o.spec?.partitions) && 'spec.partitions must be an integer',
    !isInt(o.spec?.replicas) && 'spec.replicas must be an integer',
    !isStr(o.metadata?.labels?.['strimzi.io/cluster']) && 'the strimzi.io/cluster label is required',
  ],
  'redis.redis.opstreelabs.in/v1beta2/RedisCluster': (o) => [
    !isInt(o.spec?.clusterSize) && 'spec.clusterSize must be an integer',
    !isStr(o.spec?.kubernetesConfig?.image) && 'spec.kubernetesConfig.image is required',
  ],
  'psmdb.percona.com/v1/PerconaServerMongoDB': (o) => [
    !isStr(o.spec?.crVersion) && 'spec.crVersion is required',
    !isStr(o.spec?.image) && 'spec.image is required',
    !(Array.isArray(o.spec?.replsets) && o.spec.replsets.every((r) => isStr(r.name) && isInt(r.size))) &&
      'spec.replsets needs name and size for each',
  ],
};

const rendered = {};
for (const { name, file } of overlays) {
  const objs = [];
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length) {
      ok(false, `${name}: YAML error: ${doc.errors[0].message}`);
      continue;
    }
    const o = doc.toJS();
    if (o) objs.push(o);
  }
  ok(objs.length > 0, `${name}: the rendering holds objects`);
  rendered[name] = objs;
  for (const o of objs) {
    const id = `${name}: ${o.kind}/${o.metadata?.name}`;
    if (!ok(isStr(o.apiVersion) && isStr(o.kind) && isStr(o.metadata?.name), `${id}: apiVersion, kind, metadata.name`))
      continue;
    const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
    if (operatorGroups.has(group)) {
      const check = operatorChecks[`${o.apiVersion}/${o.kind}`];
      if (!ok(check, `${id}: no check for ${o.apiVersion} ${o.kind}`)) continue;
      const problems = check(o).filter(Boolean);
      ok(problems.length === 0, `${id}: ${problems.join('; ')}`);
      const k = `${o.apiVersion} ${o.kind}`;
      unmodelled.set(k, (unmodelled.get(k) || 0) + 1);
      continue;
    }
    // kustomize folds long base64 values over lines; the API server's decoder (Go's
    // encoding/base64) skips the line breaks, the schema's "byte" format does not.
    if (o.kind === 'Secret' && isObj(o.data))
      for (const k of Object.keys(o.data)) o.data[k] = String(o.data[k]).replace(/[\r\n]/g, '');
    const Model = await modelFor(o.apiVersion, o.kind);
    if (!ok(Model, `${id}: no schema for ${o.apiVersion} ${o.kind}`)) continue;
    try {
      new Model(o).validate();
      passed++;
    } catch (e) {
      ok(false, `${id}: ${String(e.message || e).split('\n').slice(0, 3).join(' ')}`);
    }
  }
}

// --- 2. references and 3. the seed's numbers --------------------------------------------
const byKind = (objs, kind) => objs.filter((o) => o.kind === kind);
const find = (objs, kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);
const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);
const seedHpa = {
  'user-service': [3, 6], 'product-service': [6, 12], 'order-service': [6, 12],
  'inventory-service': [4, 8], 'payment-service': [3, 6], 'shipping-service': [3, 6],
  'notification-service': [3, 6], 'analytics-service': [4, 8],
};
const workers = ['worker-notification', 'worker-analytics', 'worker-recommendation'];
const externalSecrets = new Set([
  'emporium-database', 'backup-s3', 'backup-s3-mongodb', 'emporium-mongodb-users',
]);

function checkReferences(name, objs) {
  const cms = byKind(objs, 'ConfigMap');
  const secrets = byKind(objs, 'Secret');
  const services = byKind(objs, 'Service');
  for (const d of byKind(objs, 'Deployment')) {
    const id = `${name}: Deployment/${d.metadata.name}`;
    const tpl = d.spec.template;
    ok(matches(d.spec.selector?.matchLabels, tpl.metadata?.labels), `${id}: selector matches the pod labels`);
    ok(services.some((s) => matches(s.spec.selector, tpl.metadata?.labels)), `${id}: a Service selects its pods`);
    for (const c of tpl.spec.containers) {
      for (const ef of c.envFrom || []) {
        if (ef.configMapRef)
          ok(cms.some((m) => m.metadata.name === ef.configMapRef.name), `${id}: ConfigMap ${ef.configMapRef.name} is in the rendering`);
      }
      for (const e of c.env || []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (!ref) continue;
        const s = secrets.find((x) => x.metadata.name === ref.name);
        if (s) ok(ref.key in (s.data || {}) || ref.key in (s.stringData || {}), `${id}: Secret ${ref.name} has key ${ref.key}`);
        else ok(externalSecrets.has(ref.name.replace(/-[a-z0-9]{10}$/, '')), `${id}: Secret ${ref.name} is neither rendered nor a documented external Secret`);
      }
    }
  }
  for (const ing of byKind(objs, 'Ingress'))
    for (const r of ing.spec.rules || [])
      for (const p of r.http?.paths || []) {
        const be = p.backend.service;
        const svc = find(objs, 'Service', be.name);
        ok(svc && svc.spec.ports.some((x) => x.name === be.port.name || x.port === be.port.number),
          `${name}: Ingress path ${p.path} -> Service ${be.name} port ${be.port.name || be.port.number} exists`);
      }
  for (const sm of byKind(objs, 'ServiceMonitor')) {
    const selected = services.filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    ok(selected.length >= 11, `${name}: ServiceMonitor selects every Service (${selected.length})`);
    for (const ep of sm.spec.endpoints)
      ok(selected.every((s) => s.spec.ports.some((p) => p.name === ep.port)), `${name}: every selected Service has port ${ep.port}`);
  }
  for (const pdb of byKind(objs, 'PodDisruptionBudget'))
    ok(byKind(objs, 'Deployment').some((d) => matches(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels)),
      `${name}: PodDisruptionBudget/${pdb.metadata.name} selects pods`);
  for (const h of byKind(objs, 'HorizontalPodAutoscaler'))
    ok(find(objs, h.spec.scaleTargetRef.kind, h.spec.scaleTargetRef.name), `${name}: HPA/${h.metadata.name} targets an existing Deployment`);
  for (const vs of byKind(objs, 'VirtualService'))
    for (const route of vs.spec.http) {
      const total = route.route.reduce((a, r) => a + (r.weight ?? 100), 0);
      eq(total, 100, `${name}: VirtualService/${vs.metadata.name} route ${route.name} weights add up`);
      for (const r of route.route) {
        const dr = byKind(objs, 'DestinationRule').find((x) => x.spec.host === r.destination.host);
        ok(dr && dr.spec.subsets.some((s) => s.name === r.destination.subset),
          `${name}: VirtualService/${vs.metadata.name} subset ${r.destination.subset} is defined`);
      }
    }
  // Names the operators create: a Pooler/ScheduledBackup names a Cluster in the rendering.
  for (const o of objs.filter((x) => ['Pooler', 'ScheduledBackup'].includes(x.kind)))
    ok(find(objs, 'Cluster', o.spec.cluster.name), `${name}: ${o.kind}/${o.metadata.name} names an existing Cluster`);
  for (const t of byKind(objs, 'KafkaTopic'))
    ok(find(objs, 'Kafka', t.metadata.labels['strimzi.io/cluster']), `${name}: KafkaTopic/${t.metadata.name} names an existing Kafka`);
}

function drainSeconds(objs) {
  const cm = byKind(objs, 'ConfigMap').find((m) => m.metadata.name.startsWith('emporium-config'));
  return Number(cm?.data?.EMPORIUM_DRAIN_SECONDS ?? 10);
}

function checkServicesCommon(name, objs) {
  const deps = byKind(objs, 'Deployment');
  const names = deps.map((d) => d.metadata.name);
  for (const s of [...Object.keys(seedHpa), ...workers]) ok(names.includes(s), `${name}: Deployment ${s} exists`);
  const drain = drainSeconds(objs);
  for (const d of deps) {
    const id = `${name}: Deployment/${d.metadata.name}`;
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    eq(c.livenessProbe?.httpGet?.path, '/health', `${id}: liveness path`);
    eq(c.livenessProbe?.initialDelaySeconds, 30, `${id}: liveness initialDelaySeconds`);
    eq(c.livenessProbe?.periodSeconds, 10, `${id}: liveness periodSeconds`);
    eq(c.readinessProbe?.httpGet?.path, '/ready', `${id}: readiness path`);
    eq(c.readinessProbe?.initialDelaySeconds, 5, `${id}: readiness initialDelaySeconds`);
    eq(c.readinessProbe?.periodSeconds, 5, `${id}: readiness periodSeconds`);
    ok(pod.securityContext?.runAsNonRoot === true, `${id}: runAsNonRoot`);
    const args = c.args || [];
    if (d.metadata.labels['app.kubernetes.io/component'] === 'service') {
      eq(args[0], 'serve', `${id}: runs emporium serve`);
      ok(args.some((a) => a.startsWith('--services=')), `${id}: names its services`);
      const pre = c.lifecycle?.preStop?.exec?.command;
      ok(Array.isArray(pre) && pre[0] === 'sleep', `${id}: has a preStop sleep`);
      const preSec = Number(pre?.[1] ?? 0);
      ok(pod.terminationGracePeriodSeconds > preSec + drain,
        `${id}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > preStop ${preSec} + drain ${drain}`);
    } else {
      eq(args[0], 'worker', `${id}: runs emporium worker`);
      ok(args.some((a) => a.startsWith('--consumers=')), `${id}: names its consumers`);
      ok(pod.terminationGracePeriodSeconds > drain, `${id}: grace period > drain ${drain}`);
    }
  }
}

function checkProd(name, objs) {
  checkServicesCommon(name, objs);
  const deps = byKind(objs, 'Deployment');
  for (const d of deps) {
    const id = `${name}: Deployment/${d.metadata.name}`;
    const r = d.spec.template.spec.containers[0].resources;
    eq(r, { requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '2000m', memory: '4Gi' } }, `${id}: resources`);
  }
  const hpas = byKind(objs, 'HorizontalPodAutoscaler');
  eq(hpas.map((h) => h.spec.scaleTargetRef.name).sort(), Object.keys(seedHpa).sort(), `${name}: one HPA per seed service`);
  for (const h of hpas) {
    const t = h.spec.scaleTargetRef.name;
    const id = `${name}: HPA/${h.metadata.name}`;
    eq(h.apiVersion, 'autoscaling/v2', `${id}: apiVersion`);
    eq([h.spec.minReplicas, h.spec.maxReplicas], seedHpa[t], `${id}: replica range`);
    const target = (res) => h.spec.metrics.find((m) => m.type === 'Resource' && m.resource.name === res)?.resource.target;
    eq(target('cpu'), { type: 'Utilization', averageUtilization: 70 }, `${id}: CPU target`);
    eq(target('memory'), { type: 'Utilization', averageUtilization: 80 }, `${id}: memory target`);
    eq(find(objs, 'Deployment', t)?.spec.replicas, seedHpa[t][0], `${id}: Deployment starts at the minimum`);
  }
  for (const d of deps)
    ok(byKind(objs, 'PodDisruptionBudget').some((p) => matches(p.spec.selector.matchLabels, d.spec.template.metadata.labels)),
      `${name}: Deployment/${d.metadata.name} has a PodDisruptionBudget`);
  // Ingress for ingress-nginx with rate limits.
  const ing = byKind(objs, 'Ingress')[0];
  ok(ing?.spec.ingressClassName === 'nginx', `${name}: Ingress for ingress-nginx`);
  ok(Number(ing?.metadata.annotations?.['nginx.ingress.kubernetes.io/limit-rps']) > 0, `${name}: Ingress rate limit (limit-rps)`);
  // Istio: the premium subset by header, for every seed service.
  for (const s of Object.keys(seedHpa)) {
    const vs = find(objs, 'VirtualService', s);
    const premium = vs?.spec.http.find((h) => h.match?.some((m) => m.headers?.['user-type']?.exact === 'premium'));
    ok(premium && premium.route.every((r) => r.destination.subset === 'premium'), `${name}: ${s}: user-type: premium -> premium subset`);
    ok(vs && vs.spec.http.indexOf(premium) === 0, `${name}: ${s}: the premium match comes first`);
  }
  // Data layer: the seed's sizes.
  const cl = (n) => find(objs, 'Cluster', n)?.spec.instances;
  eq(cl('pg-users'), 4, `${name}: users PostgreSQL primary + 3 replicas`);
  eq(cl('pg-products'), 4, `${name}: products PostgreSQL primary + 3 replicas`);
  for (let i = 0; i < 6; i++) eq(cl(`pg-orders-${i}`), 3, `${name}: order shard ${i}: primary + 2 replicas`);
  for (const n of ['pg-inventory', 'pg-payments', 'pg-shipping']) ok(cl(n) >= 3, `${name}: ${n} has replicas`);
  for (const c of byKind(objs, 'Cluster')) {
    ok(byKind(objs, 'Pooler').some((p) => p.spec.cluster.name === c.metadata.name && p.spec.type === 'rw' && p.spec.pgbouncer.poolMode === 'transaction'),
      `${name}: Cluster/${c.metadata.name} has a read-write PgBouncer Pooler in transaction mode`);
    ok(byKind(objs, 'ScheduledBackup').some((b) => b.spec.cluster.name === c.metadata.name), `${name}: Cluster/${c.metadata.name} has a scheduled backup`);
    const at = c.spec.postgresql?.parameters?.archive_timeout;
    ok(at && parseInt(at, 10) * (at.endsWith('min') ? 60 : 1) < 300, `${name}: Cluster/${c.metadata.name}: archive_timeout < 5 min (RPO)`);
  }
  const brokers = byKind(objs, 'KafkaNodePool').filter((p) => p.spec.roles.includes('broker')).reduce((a, p) => a + p.spec.replicas, 0);
  eq(brokers, 7, `${name}: Kafka brokers`);
  const kcfg = byKind(objs, 'Kafka')[0]?.spec.kafka.config || {};
  eq([kcfg['default.replication.factor'], kcfg['min.insync.replicas']], [3, 2], `${name}: Kafka RF 3, min ISR 2`);
  const topics = byKind(objs, 'KafkaTopic');
  eq(topics.map((t) => t.metadata.name).sort(), ['analytics-events', 'cache-invalidation', 'fraud-detection-events',
    'inventory-events', 'notification-events', 'order-events', 'payment-events', 'recommendation-events'], `${name}: Kafka topics`);
  for (const t of topics)
    eq([t.spec.partitions, t.spec.replicas, t.spec.config['retention.ms'], t.spec.config['compression.type'], t.spec.config['min.insync.replicas']],
      [24, 3, 30 * 24 * 3600 * 1000, 'lz4', 2], `${name}: KafkaTopic/${t.metadata.name} partitions, RF, 30-day retention, lz4, min ISR`);
  const rc = byKind(objs, 'RedisCluster')[0];
  eq([rc?.spec.clusterSize, rc?.spec.redisLeader?.replicas, rc?.spec.redisFollower?.replicas], [3, 3, 6], `${name}: Redis Cluster 3 shards x 3 nodes`);
  const mdb = byKind(objs, 'PerconaServerMongoDB')[0];
  eq([mdb?.spec.sharding?.enabled, mdb?.spec.replsets?.length, mdb?.spec.replsets?.every((r) => r.size === 3)], [true, 6, true], `${name}: MongoDB 6 shards x 3`);
  const keys = byKind(objs, 'ConfigMap').find((m) => m.metadata.name === 'emporium-mongodb-shard-keys')?.data?.['shard-keys.js'] || '';
  ok(/order_history.*user_id: 1, created_at: 1/.test(keys) && /analytics.*date: 1, category: 1/.test(keys), `${name}: MongoDB shard keys are the seed's`);
}

const checks = {
  dev(name, objs) {
    checkServicesCommon(name, objs);
    for (const d of byKind(objs, 'Deployment')) eq(d.spec.replicas, 1, `${name}: Deployment/${d.metadata.name} replicas`);
    eq(byKind(objs, 'HorizontalPodAutoscaler').length, 0, `${name}: no HPAs`);
  },
  prod: checkProd,
  'prod-eu'(name, objs) {
    checkProd(name, objs);
    for (const dr of byKind(objs, 'DestinationRule'))
      ok(dr.spec.trafficPolicy?.loadBalancer?.localityLbSetting?.enabled === true && dr.spec.trafficPolicy?.outlierDetection,
        `${name}: DestinationRule/${dr.metadata.name}: locality-aware routing (needs outlier detection)`);
    for (const c of byKind(objs, 'Cluster'))
      ok(c.spec.backup.barmanObjectStore.destinationPath.includes('eu-west-1'), `${name}: Cluster/${c.metadata.name} backs up in its region`);
  },
  canary(name, objs) {
    const vs = find(objs, 'VirtualService', 'order-service');
    const std = vs?.spec.http.find((h) => !h.match);
    eq(std?.route.map((r) => [r.destination.subset, r.weight]), [['stable', 90], ['canary', 10]], `${name}: order-service canary at 10 %`);
    const can = find(objs, 'Deployment', 'order-service-canary');
    ok(can && can.spec.template.metadata.labels.version === 'canary' && can.spec.template.metadata.labels.app === 'order-service',
      `${name}: canary pods are order-service pods labelled version: canary`);
    ok(can && can.spec.template.spec.containers[0].image !== find(objs, 'Deployment', 'order-service').spec.template.spec.containers[0].image,
      `${name}: the canary runs another image`);
  },
};

for (const { name } of overlays) {
  const objs = rendered[name];
  checkReferences(name, objs);
  const check = checks[name] || (name.startsWith('prod') ? checkProd : null);
  if (check) check(name, objs);
}

// --- 4. PrometheusRule for promtool, metrics used vs served ------------------------------
const prod = rendered.prod || [];
const rule = byKind(prod, 'PrometheusRule')[0];
if (rulesOut && ok(rule, 'prod: a PrometheusRule is rendered'))
  writeFileSync(rulesOut, JSON.stringify({ groups: rule.spec.groups }, null, 2));
if (metricsFile) {
  const served = new Set();
  for (const line of readFileSync(metricsFile, 'utf8').split('\n')) {
    const m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (!m) continue;
    served.add(m[1]);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) served.add(m[1] + s);
  }
  ok(served.size > 10, `the /metrics scrape lists metrics (${served.size})`);
  const dashCm = byKind(prod, 'ConfigMap').find((m) => m.metadata.labels?.grafana_dashboard === '1');
  const dash = dashCm ? JSON.parse(Object.values(dashCm.data)[0]) : null;
  ok(dash, 'prod: the Grafana dashboard ConfigMap is rendered');
    // Metric names, not recording rules (level:metric:operations).
  const used = (expr) => (expr.match(/(?<![:\w])(emporium|process)_[a-z_]+(?![:\w])/g) || []);
  for (const p of dash?.panels || [])
    for (const t of p.targets) {
      const names = used(t.expr);
      ok(names.length > 0, `dashboard panel "${p.title}": queries a metric`);
      for (const n of names) ok(served.has(n), `dashboard panel "${p.title}": ${n} is served by /metrics`);
    }
  // Metrics other parts of the platform export: the operators' exporters, and the outbox
  // gauges of the event relay (issue 10). Printed, not failed, until /metrics serves them.
  const elsewhere = /^(kafka_|cnpg_)/;
  for (const g of rule?.spec.groups || [])
    for (const r of g.rules)
      for (const n of used(r.expr)) {
        if (served.has(n)) passed++;
        else if (/^emporium_(outbox|consumer)_/.test(n)) console.log(`note: rule ${r.alert || r.record}: ${n} is not served by this serve (the relay and consumers' metrics, issue 10)`);
        else ok(false, `rule ${r.alert || r.record}: ${n} is not served by /metrics`);
      }
  for (const g of rule?.spec.groups || [])
    for (const r of g.rules)
      for (const n of r.expr.match(/\b[a-z]+_[a-z_]+(?=[{[(\s])/g) || [])
        if (elsewhere.test(n)) console.log(`note: rule ${r.alert}: ${n} comes from an operator's exporter`);
}

for (const [k, n] of unmodelled)
  console.log(`note: ${n} x ${k}: structural checks only (no schema package for this operator offline)`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
