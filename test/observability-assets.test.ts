import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { Metrics } from '../src/ops/metrics.ts';

/**
 * The shipped Grafana dashboard and Prometheus alert rules
 * (deploy/observability/) against the series the server really exposes: a
 * renamed or missing metric fails here instead of as an empty panel or an
 * alert that can never fire.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const assets = path.join(root, 'deploy', 'observability');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Alerts {
  groups: Array<{ name: string; rules: Rule[] }>;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Array<{ expr: string; datasource?: { uid: string } }>;
}

/** Every series name the server's registry exposes; histograms and summaries as their sample names. */
async function registeredSeries(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const m of await new Metrics().registry.getMetricsAsJSON()) {
    names.add(m.name);
    // prom-client types `type` as an enum but reports the string ('histogram').
    const type = String(m.type);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(`${m.name}${s}`);
  }
  return names;
}

const seriesIn = (expr: string): string[] => [...new Set(expr.match(/\bengram_[a-z0-9_]+\b/g) ?? [])];

/** Brackets balance outside string literals: a cheap guard against a broken edit of an expression. */
function balanced(expr: string): boolean {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const stack: string[] = [];
  let quote: string | undefined;
  for (let i = 0; i < expr.length; i++) {
    const c = expr.charAt(i);
    if (quote !== undefined) {
      if (c === '\\') i += 1;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'" || c === '`') quote = c;
    else if ('([{'.includes(c)) stack.push(c);
    else if (c in pairs && stack.pop() !== pairs[c]) return false;
  }
  return stack.length === 0 && quote === undefined;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const line of markdown.split('\n')) {
    const m = /^#{1,6}\s+(.+?)\s*$/.exec(line);
    if (m?.[1] === undefined) continue;
    out.add(
      m[1]
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    );
  }
  return out;
}

/** Names of the series being introduced with the job queue and resilience work (issue 5). */
const NEW_SERIES = [
  'engram_jobs_depth',
  'engram_jobs_oldest_age_seconds',
  'engram_jobs_processed_total',
  'engram_dependency_breaker_state',
  'engram_dependency_breaker_transitions_total',
];

function unknownSeries(exprs: readonly { where: string; expr: string }[], known: Set<string>): string[] {
  return exprs.flatMap(({ where, expr }) =>
    seriesIn(expr)
      .filter((name) => !known.has(name))
      .map(
        (name) =>
          `${where}: ${name} is not registered by Metrics (src/ops/metrics.ts)` +
          (NEW_SERIES.some((s) => name.startsWith(s))
            ? ' — it comes with the job queue / dependency breaker work; land that first'
            : ' — fix the name or register the series'),
      ),
  );
}

let known: Set<string>;
beforeAll(async () => {
  known = await registeredSeries();
});

describe('deploy/observability/alerts.yml', () => {
  const alerts = parse(readFileSync(path.join(assets, 'alerts.yml'), 'utf8')) as Alerts;
  const rules = alerts.groups.flatMap((g) => g.rules.map((r) => ({ group: g.name, ...r })));
  const alerting = rules.filter((r) => r.alert !== undefined);

  it('has the alerts issue 5 asks for', () => {
    const names = new Set(alerting.map((r) => r.alert));
    for (const name of [
      'EngramHighP95Latency',
      'EngramHigh5xxRate',
      'EngramBreakerOpen',
      'EngramJobQueueOldest',
      'EngramDown',
      'EngramRateLimitRejectionsHigh',
    ]) {
      expect(names, `alert ${name}`).toContain(name);
    }
  });

  it('gives every alert a severity, a summary, a description and a runbook in docs/operations.md', () => {
    const docAnchors = anchors(read('docs/operations.md'));
    for (const r of alerting) {
      const what = `${r.group}/${r.alert}`;
      expect(['critical', 'warning', 'info'], `${what} severity`).toContain(r.labels?.severity);
      expect(r.annotations?.summary?.trim(), `${what} summary`).toBeTruthy();
      expect(r.annotations?.description?.trim(), `${what} description`).toBeTruthy();
      const runbook = /^docs\/operations\.md#([a-z0-9-]+)$/.exec(r.annotations?.runbook_url ?? '');
      expect(runbook, `${what} runbook_url ${r.annotations?.runbook_url}`).not.toBeNull();
      expect(docAnchors, `${what}: docs/operations.md has no heading for #${runbook?.[1]}`).toContain(runbook?.[1]);
    }
  });

  it('only uses series the server exposes', () => {
    const exprs = rules.map((r) => ({ where: `${r.group}/${r.alert ?? r.record}`, expr: r.expr }));
    for (const { where, expr } of exprs) expect(balanced(expr), `${where}: unbalanced brackets`).toBe(true);
    expect(unknownSeries(exprs, known)).toEqual([]);
  });
});

describe('deploy/observability/grafana-dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(path.join(assets, 'grafana-dashboard.json'), 'utf8')) as {
    __inputs: Array<{ name: string; type: string; pluginId: string }>;
    panels: Panel[];
    templating: { list: Array<{ name: string; definition?: string }> };
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  it('takes its Prometheus data source as the DS_PROMETHEUS input', () => {
    expect(dashboard.__inputs).toContainEqual(
      expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }),
    );
    for (const p of panels) {
      expect(p.datasource?.uid, p.title).toBe('${DS_PROMETHEUS}');
      for (const t of p.targets ?? []) expect(t.datasource?.uid, p.title).toBe('${DS_PROMETHEUS}');
    }
  });

  it('lays out panels with unique ids inside the 24-column grid', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
  });

  it('covers traffic, latency, errors, rate limits, breakers, embedder, cache, pool, jobs and the process', () => {
    const used = new Set(panels.flatMap((p) => (p.targets ?? []).flatMap((t) => seriesIn(t.expr))));
    for (const name of [
      'engram_http_requests_total',
      'engram_http_request_duration_seconds_bucket',
      'engram_rate_limit_rejections_total',
      'engram_embedder_breaker_state',
      'engram_dependency_breaker_state',
      'engram_embedder_batch_size_bucket',
      'engram_cache_requests_total',
      'engram_db_pool_connections',
      'engram_jobs_depth',
      'engram_jobs_oldest_age_seconds',
      'engram_process_cpu_seconds_total',
      'engram_process_resident_memory_bytes',
      'engram_nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(used, name).toContain(name);
    }
  });

  it('only uses series the server exposes', () => {
    const exprs = [
      ...panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr }))),
      ...dashboard.templating.list.map((v) => ({ where: `variable $${v.name}`, expr: v.definition ?? '' })),
    ];
    for (const { where, expr } of exprs) expect(balanced(expr), `${where}: unbalanced brackets`).toBe(true);
    expect(unknownSeries(exprs, known)).toEqual([]);
  });
});
