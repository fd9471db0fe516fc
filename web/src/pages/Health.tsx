// System health from what the API exposes today: its own liveness/readiness (database, Kafka),
// its Prometheus counters, and pipeline freshness and throughput read from the anomaly table.
import { useRef } from "react";

import { unwrap } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { TrendChart } from "../components/charts";
import { Async, Card, Empty, Kpi, PageHeader } from "../components/ui";
import { relativeTime } from "../lib/format";
import { useApi } from "../lib/useApi";

const REFRESH_MS = 5000;

/** Sum of every sample of `name` in a Prometheus text exposition. */
export function sumMetric(text: string, name: string): number | null {
  let total = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      const value = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (Number.isFinite(value)) {
        total += value;
        seen = true;
      }
    }
  }
  return seen ? total : null;
}

export function HealthPage() {
  const { api } = useAuth();
  const ready = useApi(
    async (signal) => {
      const { data, error, response } = await api.GET("/readyz", { signal });
      // 503 still carries the per-check body: show which dependency is down rather than a generic error.
      return { status: response.status, body: (data ?? error) as { ready: boolean; checks: Record<string, boolean> } };
    },
    [],
    REFRESH_MS,
  );
  const previous = useRef<{ at: number; requests: number } | null>(null);
  const metrics = useApi(
    async (signal) => {
      const text = await unwrap(api.GET("/metrics", { parseAs: "text", signal }));
      const requests = sumMetric(text, "vigil_http_requests_total");
      const now = Date.now();
      const last = previous.current;
      const rate = last && requests !== null ? Math.max(0, (requests - last.requests) / ((now - last.at) / 1000)) : null;
      if (requests !== null) previous.current = { at: now, requests };
      return { requests, rate, ingested: sumMetric(text, "vigil_transactions_accepted_total") };
    },
    [],
    REFRESH_MS,
  );
  const summary = useApi((signal) => unwrap(api.GET("/v1/stats/summary", { signal })), [], REFRESH_MS);
  const trends = useApi(
    (signal) => {
      const to = new Date();
      return unwrap(
        api.GET("/v1/stats/trends", {
          params: {
            query: { from: new Date(to.getTime() - 6 * 3600_000).toISOString(), to: to.toISOString(), bucket: "hour", group_by: "family" },
          },
          signal,
        }),
      );
    },
    [],
    REFRESH_MS,
  );

  const latest = summary.data?.last_anomalies[0];
  const freshSeconds = latest ? (Date.now() - new Date(latest.detected_at).getTime()) / 1000 : null;
  const lastHour = (trends.data?.points ?? [])
    .filter((p) => new Date(p.bucket_start).getTime() >= Date.now() - 3600_000)
    .reduce((s, p) => s + p.count, 0);

  return (
    <>
      <PageHeader title="System health" subtitle="Refreshed every 5 s from the API's status endpoints." />
      <div className="kpis">
        <Kpi
          testId="health-ready"
          label="API readiness"
          value={ready.data ? (ready.data.body.ready ? "Ready" : "Not ready") : ready.error ? "Unreachable" : "…"}
          tone={ready.data ? (ready.data.body.ready ? "good" : "bad") : ready.error ? "bad" : "neutral"}
          hint={
            ready.data
              ? Object.entries(ready.data.body.checks)
                  .map(([name, ok]) => `${name} ${ok ? "✓" : "✗"}`)
                  .join(" · ")
              : ready.error?.message
          }
        />
        <Kpi
          label="Pipeline freshness"
          value={freshSeconds === null ? "—" : freshSeconds < 120 ? "Live" : "Stale"}
          tone={freshSeconds === null ? "neutral" : freshSeconds < 120 ? "good" : "warn"}
          hint={latest ? `last anomaly detected ${relativeTime(latest.detected_at)}` : "no anomaly detected yet"}
        />
        <Kpi label="Anomalies, last hour" value={trends.data ? lastHour.toLocaleString("en-GB") : "…"} hint="all detectors" />
        <Kpi
          label="API requests served"
          value={metrics.data?.requests !== null && metrics.data ? metrics.data.requests.toLocaleString("en-GB") : "…"}
          hint={
            metrics.data?.rate !== null && metrics.data?.rate !== undefined
              ? `${metrics.data.rate.toFixed(1)} requests/s over the last 5 s`
              : "rate appears after the next refresh"
          }
        />
      </div>
      <div className="grid-2">
        <Card title="Detections per hour by family (throughput)" className="span-2">
          <Async value={trends} empty={(t) => (t.points.length ? null : <Empty title="No detections in the last 6 hours" />)}>
            {(t) => <TrendChart points={t.points} bucket="hour" timeZone={summary.data?.timezone ?? "UTC"} height={180} />}
          </Async>
        </Card>
        <Card title="Dependencies">
          <Async value={ready}>
            {(r) => (
              <ul className="checks" aria-label="Dependency checks">
                {Object.entries(r.body.checks).map(([name, ok]) => (
                  <li key={name} className={ok ? "ok" : "bad"}>
                    <span className="dot" aria-hidden="true" /> {name}: {ok ? "answering" : "not answering"}
                  </li>
                ))}
              </ul>
            )}
          </Async>
        </Card>
        <Card title="Stream services, consumer lag, dead letters">
          <Empty title="Not exposed by the API yet">
            Per-service status, consumer lag and DLQ depth live in each service's own /metrics. The dashboard
            shows them once the API offers a status endpoint (see docs/dashboard.md).
          </Empty>
        </Card>
      </div>
    </>
  );
}
