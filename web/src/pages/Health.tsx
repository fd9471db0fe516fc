// System health: the pipeline's status from GET /v1/system/status (services, consumer lag, dead letters,
// throughput, degraded detectors), the API's own readiness, and detections per hour.
import { useRef } from "react";

import { unwrap, type Schemas } from "../api/client";
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

type ServiceView = Schemas["ServiceView"];

const SERVICE_LABEL: Record<ServiceView["status"], string> = {
  ready: "Ready",
  not_ready: "Not ready",
  running: "Running",
  down: "Down",
  unknown: "Unknown",
};

function serviceTone(status: ServiceView["status"]): "ok" | "bad" | "warn" {
  if (status === "ready" || status === "running") return "ok";
  if (status === "unknown") return "warn";
  return "bad";
}

export function ServicesTable({ services }: { services: ServiceView[] }) {
  return (
    <table className="table" aria-label="Stream services">
      <thead>
        <tr>
          <th scope="col">Service</th>
          <th scope="col">Status</th>
          <th scope="col">Consumer group</th>
          <th scope="col" className="num">
            Consumers
          </th>
          <th scope="col" className="num">
            Lag (messages)
          </th>
          <th scope="col">Failing checks</th>
        </tr>
      </thead>
      <tbody>
        {services.map((s) => {
          const failing = Object.entries(s.checks)
            .filter(([, ok]) => !ok)
            .map(([name]) => name);
          return (
            <tr key={s.name} data-testid={`service-${s.name}`}>
              <th scope="row">{s.name}</th>
              <td>
                <span className={`status-dot ${serviceTone(s.status)}`} aria-hidden="true" /> {SERVICE_LABEL[s.status]}
              </td>
              <td className="mono">{s.consumer ? `${s.consumer.group} (${s.consumer.state})` : "—"}</td>
              <td className="num">{s.consumer?.members ?? "—"}</td>
              <td className="num" data-testid={`lag-${s.name}`}>
                {s.consumer?.lag === null || s.consumer?.lag === undefined ? "—" : s.consumer.lag.toLocaleString("en-GB")}
              </td>
              <td>{failing.length ? failing.join(", ") : "none"}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function HealthPage() {
  const { api } = useAuth();
  const status = useApi((signal) => unwrap(api.GET("/v1/system/status", { signal })), [], REFRESH_MS);
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

  const totalLag = status.data
    ? status.data.services.reduce((sum, s) => sum + (s.consumer?.lag ?? 0), 0)
    : null;
  const latest = summary.data?.last_anomalies[0];
  const freshSeconds = latest ? (Date.now() - new Date(latest.detected_at).getTime()) / 1000 : null;
  const lastHour = (trends.data?.points ?? [])
    .filter((p) => new Date(p.bucket_start).getTime() >= Date.now() - 3600_000)
    .reduce((s, p) => s + p.count, 0);

  return (
    <>
      <PageHeader
        title="System health"
        subtitle={`Refreshed every 5 s from the API's status endpoints${lastHour ? ` · ${lastHour.toLocaleString("en-GB")} detections in the last hour` : ""}.`}
      />
      <div className="kpis" aria-live="polite">
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
          testId="health-lag"
          label="Consumer lag"
          value={totalLag === null ? (status.error ? "—" : "…") : totalLag.toLocaleString("en-GB")}
          tone={totalLag === null ? "neutral" : totalLag < 10_000 ? "good" : "warn"}
          hint={status.data ? "messages behind, all stream services" : status.error?.message}
        />
        <Kpi
          testId="health-dlq"
          label="Dead letters"
          value={
            status.data ? (status.data.dlq.depth === null ? "—" : status.data.dlq.depth.toLocaleString("en-GB")) : "…"
          }
          tone={status.data?.dlq.depth ? "warn" : status.data ? "good" : "neutral"}
          hint={status.data ? `retained in ${status.data.dlq.topic}` : undefined}
        />
        <Kpi
          testId="health-throughput"
          label="Throughput"
          value={
            status.data?.throughput.transactions_per_second === null || !status.data
              ? "…"
              : `${status.data.throughput.transactions_per_second.toLocaleString("en-GB")} tx/s`
          }
          hint={
            status.data
              ? `${status.data.throughput.anomalies_last_minute.toLocaleString("en-GB")} anomalies in the last minute`
              : "rate appears after the next refresh"
          }
        />
        <Kpi
          testId="health-degraded"
          label="Degraded detectors"
          value={status.data ? String(status.data.degraded_detectors.length) : "…"}
          tone={status.data ? (status.data.degraded_detectors.length ? "bad" : "good") : "neutral"}
          hint={status.data?.degraded_detectors.join(", ") || (status.data ? "every detector judging normally" : undefined)}
        />
        <Kpi
          label="Pipeline freshness"
          value={freshSeconds === null ? "—" : freshSeconds < 120 ? "Live" : "Stale"}
          tone={freshSeconds === null ? "neutral" : freshSeconds < 120 ? "good" : "warn"}
          hint={latest ? `last anomaly detected ${relativeTime(latest.detected_at)}` : "no anomaly detected yet"}
        />
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
        <Card title="Stream services and consumer lag" className="span-2">
          <Async
            value={status}
            empty={(s) =>
              s.services.length ? null : <Empty title="No stream services configured for this API" />
            }
          >
            {(s) => (
              <>
                {s.kafka_reachable ? null : (
                  <p className="state state-error" role="alert">
                    Kafka cannot be reached from the API: lag and dead letters are unknown.
                  </p>
                )}
                <ServicesTable services={s.services} />
              </>
            )}
          </Async>
        </Card>
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
      </div>
    </>
  );
}
