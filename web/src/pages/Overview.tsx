import { useState } from "react";
import { Link } from "react-router-dom";

import { unwrap } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { TrendChart } from "../components/charts";
import { Async, Card, Empty, Kpi, PageHeader, ScoreBar, SeverityBadge } from "../components/ui";
import { formatMoney, formatPercent, formatShortTime, relativeTime, startOfWeek, transactionPath } from "../lib/format";
import { useApi } from "../lib/useApi";

const REFRESH_MS = 5000;
type GroupBy = "severity" | "detector" | "family";

export function OverviewPage() {
  const { api, can } = useAuth();
  const [groupBy, setGroupBy] = useState<GroupBy>("severity");
  const canSeeSystem = can("system:read");
  const status = useApi(
    (signal) =>
      canSeeSystem ? unwrap(api.GET("/v1/system/status", { signal })) : Promise.resolve(undefined),
    [canSeeSystem],
    REFRESH_MS,
  );
  const summary = useApi((signal) => unwrap(api.GET("/v1/stats/summary", { signal })), [], REFRESH_MS);
  const timeZone = summary.data?.timezone ?? "UTC";
  const trends = useApi(
    (signal) => {
      const to = new Date();
      const from = new Date(to.getTime() - 24 * 3600_000);
      return unwrap(
        api.GET("/v1/stats/trends", {
          params: { query: { from: from.toISOString(), to: to.toISOString(), bucket: "hour", group_by: groupBy } },
          signal,
        }),
      );
    },
    [groupBy],
    REFRESH_MS,
  );
  const precision = useApi(
    (signal) =>
      unwrap(
        api.GET("/v1/metrics/precision", {
          params: { query: { from: startOfWeek(new Date(), timeZone) } },
          signal,
        }),
      ),
    [timeZone],
    REFRESH_MS,
  );

  const detectors = precision.data?.detectors ?? [];
  const fraud = detectors.reduce((s, d) => s + d.fraud, 0);
  const labelled = detectors.reduce((s, d) => s + d.labelled, 0);
  const weekPrecision = labelled ? fraud / labelled : null;

  return (
    <>
      <PageHeader
        title="Overview"
        subtitle={
          summary.refreshedAt
            ? `Live · refreshed every 5 s · times in ${timeZone}`
            : "Live figures from the anomaly pipeline"
        }
      />
      <div className="kpis" aria-live="polite">
        <Kpi
          testId="kpi-today"
          label={`Anomalies today (${timeZone})`}
          value={summary.data ? summary.data.anomalies_today.toLocaleString("en-GB") : "…"}
          hint={
            summary.data
              ? ["critical", "warning", "info"]
                  .map((s) => `${summary.data!.today_by_severity[s] ?? 0} ${s}`)
                  .join(" · ")
              : undefined
          }
          tone={summary.data && (summary.data.today_by_severity.critical ?? 0) > 0 ? "bad" : "neutral"}
        />
        <Kpi
          testId="kpi-open"
          label="Open cases"
          value={summary.data ? summary.data.open_cases.toLocaleString("en-GB") : "…"}
          hint={<Link to="/queue?status=open">Work the queue →</Link>}
          tone={summary.data && summary.data.open_cases > 0 ? "warn" : "good"}
        />
        <Kpi
          testId="kpi-precision"
          label="Precision this week"
          value={precision.data ? formatPercent(weekPrecision) : precision.error ? "—" : "…"}
          hint={
            precision.error
              ? precision.error.message
              : labelled
                ? `${fraud} of ${labelled} labelled detections were fraud`
                : "No analyst labels yet this week"
          }
          tone={weekPrecision === null ? "neutral" : weekPrecision >= 0.5 ? "good" : "warn"}
        />
        <Kpi
          testId="kpi-degraded"
          label="Degraded detectors"
          value={canSeeSystem ? (status.data ? String(status.data.degraded_detectors.length) : status.error ? "—" : "…") : "n/a"}
          hint={
            !canSeeSystem
              ? "System status needs the analyst or admin role"
              : status.data
                ? status.data.degraded_detectors.join(", ") || "Every detector is judging normally"
                : status.error?.message
          }
          tone={
            canSeeSystem && status.data ? (status.data.degraded_detectors.length ? "bad" : "good") : "neutral"
          }
        />
      </div>

      <div className="grid-2">
        <Card
          title="Anomalies, last 24 hours"
          className="span-2"
          actions={
            <div className="segmented" role="group" aria-label="Group the chart by">
              {(["severity", "detector", "family"] as const).map((g) => (
                <button
                  key={g}
                  type="button"
                  aria-pressed={groupBy === g}
                  className={groupBy === g ? "active" : ""}
                  onClick={() => setGroupBy(g)}
                >
                  {g}
                </button>
              ))}
            </div>
          }
        >
          <Async
            value={trends}
            empty={(t) => (t.points.length ? null : <Empty title="No anomalies in the last 24 hours" />)}
          >
            {(t) => <TrendChart points={t.points} bucket={t.bucket} timeZone={timeZone} />}
          </Async>
        </Card>

        <Card title="Latest anomalies" actions={<Link to="/queue?view=anomalies">All anomalies →</Link>}>
          <Async
            value={summary}
            empty={(s) => (s.last_anomalies.length ? null : <Empty title="No anomalies yet">Traffic is quiet.</Empty>)}
          >
            {(s) => (
              <table className="table table-compact" aria-label="Last 10 anomalies">
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Entity</th>
                    <th scope="col">Detector</th>
                    <th scope="col">Amount</th>
                    <th scope="col">Score</th>
                  </tr>
                </thead>
                <tbody data-testid="last-anomalies">
                  {s.last_anomalies.slice(0, 10).map((a) => (
                    <tr key={a.anomaly_id}>
                      <td title={a.event_time}>{formatShortTime(a.event_time, timeZone)}</td>
                      <td>
                        <Link className="nowrap" to={transactionPath(a.tenant_id, a.transaction_id)}>
                          {a.entity_id}
                        </Link>
                        <div className="muted small">{a.entity_type}</div>
                      </td>
                      <td>
                        <SeverityBadge severity={a.severity} /> {a.detector_name}
                      </td>
                      <td className="num nowrap">{formatMoney(a.amount, a.currency)}</td>
                      <td>
                        <ScoreBar score={a.score} compact />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Async>
        </Card>

        <Card title="High-risk entities" actions={<span className="muted small">≥ 3 anomalies in 7 days</span>}>
          <Async
            value={summary}
            empty={(s) =>
              s.high_risk_entities.length ? null : <Empty title="No high-risk entities">Nothing repeats this week.</Empty>
            }
          >
            {(s) => (
              <table className="table table-compact" aria-label="High-risk entities">
                <thead>
                  <tr>
                    <th scope="col">Entity</th>
                    <th scope="col" className="num">
                      Anomalies
                    </th>
                    <th scope="col">Max score</th>
                    <th scope="col">Last seen</th>
                  </tr>
                </thead>
                <tbody>
                  {s.high_risk_entities.map((e) => (
                    <tr key={`${e.tenant_id}/${e.entity_type}/${e.entity_id}`}>
                      <td>
                        <Link
                          to={`/queue?view=anomalies&entity_type=${e.entity_type}&entity_id=${encodeURIComponent(e.entity_id)}`}
                        >
                          {e.entity_type} {e.entity_id}
                        </Link>
                      </td>
                      <td className="num">{e.anomaly_count}</td>
                      <td>
                        <ScoreBar score={e.max_score} compact />
                      </td>
                      <td title={e.last_event_time}>{relativeTime(e.last_event_time)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Async>
        </Card>
      </div>
    </>
  );
}
