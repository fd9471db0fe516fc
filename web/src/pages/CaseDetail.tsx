// One case: what happened, why every detector flagged it, how it compares with the entity's history,
// and a one-click verdict that becomes a training label.
import { useEffect, useState } from "react";
import { Link, useParams } from "react-router-dom";

import { unwrap, type CaseStatus, type Reason } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { TimelineChart } from "../components/charts";
import { Async, Card, Empty, ErrorState, Loading, PageHeader, ScoreBar, SeverityBadge, StatusBadge } from "../components/ui";
import {
  featureEntity,
  featureLabel,
  formatMoney,
  formatNumber,
  formatTime,
  relativeTime,
  statusLabel,
  transactionPath,
} from "../lib/format";
import { useApi } from "../lib/useApi";

const VERDICTS: { status: CaseStatus; label: string; key: string; tone: string }[] = [
  { status: "confirmed_fraud", label: "Confirmed fraud", key: "f", tone: "btn-danger" },
  { status: "false_positive", label: "False positive", key: "p", tone: "btn-secondary" },
  { status: "expected", label: "Expected", key: "e", tone: "btn-secondary" },
];

export function CasePage() {
  const { caseId = "" } = useParams();
  const { api, can, me } = useAuth();
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ tone: "ok" | "error"; text: string } | null>(null);

  const kase = useApi(
    (signal) => unwrap(api.GET("/v1/cases/{case_id}", { params: { path: { case_id: caseId } }, signal })),
    [caseId],
  );
  const c = kase.data;
  const tx = useApi(
    (signal) =>
      c
        ? unwrap(
            api.GET("/v1/transactions/{transaction_id}", {
              params: { path: { transaction_id: c.transaction_id }, query: { tenant_id: c.tenant_id } },
              signal,
            }),
          )
        : new Promise<never>(() => undefined),
    [c?.transaction_id],
  );
  const firstAnomaly = c?.anomalies[0]?.anomaly_id;
  const detail = useApi(
    (signal) =>
      firstAnomaly
        ? unwrap(api.GET("/v1/anomalies/{anomaly_id}", { params: { path: { anomaly_id: firstAnomaly } }, signal }))
        : Promise.resolve(null),
    [firstAnomaly],
  );
  const timeline = useApi(
    (signal) =>
      c
        ? unwrap(
            api.GET("/v1/entities/{entity_type}/{entity_id}/timeline", {
              params: {
                path: { entity_type: c.entity_type, entity_id: c.entity_id },
                query: { tenant_id: c.tenant_id, limit: 200 },
              },
              signal,
            }),
          )
        : new Promise<never>(() => undefined),
    [c?.entity_type, c?.entity_id],
  );
  const related = useApi(
    (signal) =>
      c
        ? unwrap(
            api.GET("/v1/anomalies", {
              params: {
                query: { tenant_id: c.tenant_id, entity_type: c.entity_type, entity_id: c.entity_id, limit: 30 },
              },
              signal,
            }),
          )
        : new Promise<never>(() => undefined),
    [c?.entity_type, c?.entity_id],
  );
  const canAudit = can("audit:read");
  const audit = useApi(
    async (signal) => {
      if (!c || !canAudit) return null;
      const [caseEntries, labelEntries] = await Promise.all([
        unwrap(api.GET("/v1/audit", { params: { query: { object_type: "case", object_id: c.case_id, limit: 100 } }, signal })),
        unwrap(
          api.GET("/v1/audit", {
            params: { query: { object_type: "label", object_id: c.transaction_id, limit: 100 } },
            signal,
          }),
        ),
      ]);
      return [...caseEntries.data, ...labelEntries.data].sort((a, b) => b.at.localeCompare(a.at));
    },
    [c?.case_id, c?.updated_at, canAudit],
  );

  async function decide(status: CaseStatus | null, withNote: string) {
    if (!c) return;
    setBusy(true);
    setMessage(null);
    try {
      const body: { status?: CaseStatus; note?: string } = {};
      if (status) body.status = status;
      if (withNote.trim()) body.note = withNote.trim();
      await unwrap(api.PATCH("/v1/cases/{case_id}", { params: { path: { case_id: c.case_id } }, body }));
      setNote("");
      setMessage({
        tone: "ok",
        text: status ? `Marked as ${statusLabel(status).toLowerCase()}; the label is recorded.` : "Note added.",
      });
      kase.reload();
    } catch (exc) {
      setMessage({ tone: "error", text: exc instanceof Error ? exc.message : String(exc) });
    } finally {
      setBusy(false);
    }
  }

  const canDecide = can("cases:write");
  useEffect(() => {
    if (!canDecide || !c) return undefined;
    function onKey(event: KeyboardEvent) {
      const target = event.target as HTMLElement | null;
      if (!target || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) || event.metaKey || event.ctrlKey) return;
      const verdict = VERDICTS.find((v) => v.key === event.key);
      if (verdict && !busy) void decide(verdict.status, note);
    }
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  if (!c) {
    return kase.error ? <ErrorState error={kase.error} onRetry={kase.reload} /> : <Loading label="Loading the case…" />;
  }

  const reasonsByFeature = new Map<string, Reason>();
  for (const a of c.anomalies) for (const r of a.reasons) if (!reasonsByFeature.has(r.feature)) reasonsByFeature.set(r.feature, r);
  const anomalousIds = new Set((timeline.data?.anomalies ?? []).map((a) => a.transaction_id));
  const others = (related.data?.data ?? []).filter((a) => a.transaction_id !== c.transaction_id);
  const decided = ["confirmed_fraud", "false_positive", "expected"].includes(c.status);

  return (
    <>
      <PageHeader
        title={`Case · ${c.entity_type} ${c.entity_id}`}
        subtitle={
          <>
            <Link to="/queue">← Queue</Link> · transaction <code>{c.transaction_id}</code> · opened {relativeTime(c.opened_at)}
            {c.assignee ? ` · assigned to ${c.assignee}` : ""}
          </>
        }
        actions={
          <div className="case-status">
            <StatusBadge status={c.status} />
            <SeverityBadge severity={c.max_severity} />
            <ScoreBar score={c.max_score} />
          </div>
        }
      />

      <section className="card verdict-card" aria-label="Verdict">
        {canDecide ? (
          <>
            <div className="verdict-buttons">
              {VERDICTS.map((v) => (
                <button
                  key={v.status}
                  type="button"
                  className={`btn ${v.tone} ${c.status === v.status ? "current" : ""}`}
                  disabled={busy}
                  aria-pressed={c.status === v.status}
                  onClick={() => void decide(v.status, note)}
                  aria-keyshortcuts={v.key}
                >
                  {v.label} <kbd>{v.key}</kbd>
                </button>
              ))}
              {c.status === "open" ? (
                <button type="button" className="btn btn-ghost" disabled={busy} onClick={() => void decide("investigating", note)}>
                  Start investigating
                </button>
              ) : null}
            </div>
            <label htmlFor="verdict-note" className="small">
              Note (optional, saved with the verdict)
            </label>
            <div className="note-row">
              <textarea
                id="verdict-note"
                rows={2}
                value={note}
                maxLength={4000}
                onChange={(e) => setNote(e.target.value)}
                placeholder="What convinced you? Customer called, known travel, …"
              />
              <button type="button" className="btn" disabled={busy || !note.trim()} onClick={() => void decide(null, note)}>
                Add note
              </button>
            </div>
          </>
        ) : (
          <p className="muted">Your role ({me?.roles.join(", ")}) can read cases but not record verdicts.</p>
        )}
        {c.label ? (
          <p className="label-line" data-testid="case-label">
            Label: <strong>{c.label.label.replace(/_/g, " ")}</strong> by {c.label.author} ({c.label.source}),{" "}
            {relativeTime(c.label.labelled_at)}
            {c.label.reason ? ` — “${c.label.reason}”` : ""}
          </p>
        ) : decided ? null : (
          <p className="muted small">No label yet: your verdict trains the supervised model.</p>
        )}
        {message ? (
          <p role={message.tone === "error" ? "alert" : "status"} className={message.tone === "error" ? "form-error" : "form-ok"}>
            {message.text}
          </p>
        ) : null}
      </section>

      <div className="grid-2">
        <Card title="Transaction">
          <Async value={tx}>
            {(t) => (
              <dl className="facts">
                <dt>Amount</dt>
                <dd className="amount">{formatMoney(t.amount, t.currency)}</dd>
                <dt>When</dt>
                <dd>{formatTime(t.occurred_at)}</dd>
                <dt>Account</dt>
                <dd>{t.account_id}</dd>
                <dt>Card</dt>
                <dd>{t.card_id ?? "—"}</dd>
                <dt>Merchant</dt>
                <dd>
                  {t.merchant_id} <span className="muted">({t.merchant_category})</span>
                </dd>
                <dt>Channel</dt>
                <dd>{t.channel.replace(/_/g, " ")}</dd>
                <dt>Country</dt>
                <dd>{t.country}</dd>
                <dt>Device</dt>
                <dd>{t.device_id ?? "—"}</dd>
                <dt>IP</dt>
                <dd>{t.ip ?? "—"}</dd>
                <dt>Tenant</dt>
                <dd>{t.tenant_id}</dd>
              </dl>
            )}
          </Async>
        </Card>

        <Card title={`Detector verdicts (${c.anomalies.length})`}>
          <ul className="verdicts" data-testid="detector-verdicts">
            {c.anomalies.map((a) => (
              <li key={a.anomaly_id} className="verdict">
                <div className="verdict-head">
                  <SeverityBadge severity={a.severity} />
                  <strong>{a.detector_name}</strong>
                  <span className="muted small">
                    {a.detector_family} v{a.detector_version}
                  </span>
                  <ScoreBar score={a.score} />
                </div>
                <ul className="reasons">
                  {a.reasons.map((r, i) => (
                    <li key={`${r.feature}-${i}`}>
                      {r.text}
                      {r.baseline !== null && r.baseline !== undefined ? (
                        <span className="muted small">
                          {" "}
                          (value {formatNumber(r.value)}, usual {formatNumber(r.baseline)})
                        </span>
                      ) : null}
                    </li>
                  ))}
                  {a.reasons.length === 0 ? <li className="muted">No reasons were given.</li> : null}
                </ul>
              </li>
            ))}
          </ul>
        </Card>

        <Card title={`${c.entity_type} ${c.entity_id}: amounts over time`} className="span-2">
          <Async
            value={timeline}
            empty={(t) => (t.transactions.length ? null : <Empty title="No history for this entity yet" />)}
          >
            {(t) => (
              <TimelineChart
                transactions={t.transactions}
                anomalousIds={anomalousIds}
                currentId={c.transaction_id}
                timeZone="UTC"
              />
            )}
          </Async>
        </Card>

        <Card title="Feature snapshot">
          <Async
            value={detail}
            empty={(d) =>
              d && Object.keys(d.features).length ? null : <Empty title="No feature snapshot was stored with this anomaly" />
            }
          >
            {(d) => <FeatureSnapshot features={d!.features} reasons={reasonsByFeature} />}
          </Async>
        </Card>

        <Card title="Related anomalies on this entity">
          <Async value={related} empty={() => (others.length ? null : <Empty title="No other anomalies on this entity" />)}>
            {() => (
              <ul className="related">
                {others.slice(0, 10).map((a) => (
                  <li key={a.anomaly_id}>
                    <Link to={transactionPath(a.tenant_id, a.transaction_id)}>{formatTime(a.event_time)}</Link>{" "}
                    <SeverityBadge severity={a.severity} /> {a.detector_name} · {formatMoney(a.amount, a.currency)}{" "}
                    <StatusBadge status={a.status} />
                  </li>
                ))}
                {others.length > 10 ? (
                  <li>
                    <Link
                      to={`/queue?view=anomalies&entity_type=${c.entity_type}&entity_id=${encodeURIComponent(c.entity_id)}`}
                    >
                      All anomalies on this entity →
                    </Link>
                  </li>
                ) : null}
              </ul>
            )}
          </Async>
        </Card>

        <Card title={`Notes (${c.notes.length})`}>
          {c.notes.length ? (
            <ul className="notes">
              {c.notes.map((n) => (
                <li key={n.note_id}>
                  <div className="note-meta">
                    <strong>{n.author}</strong> · {formatTime(n.created_at)}
                  </div>
                  <div>{n.body}</div>
                </li>
              ))}
            </ul>
          ) : (
            <Empty title="No notes yet" />
          )}
        </Card>

        <Card title="History">
          {canAudit ? (
            <Async value={audit} empty={(a) => (a && a.length ? null : <Empty title="No changes recorded yet" />)}>
              {(entries) => (
                <ol className="audit" data-testid="case-audit">
                  {entries!.map((e) => (
                    <li key={e.audit_id}>
                      <span className="muted small">{formatTime(e.at)}</span> <strong>{e.actor}</strong>{" "}
                      {describeAudit(e.action, e.details)}
                    </li>
                  ))}
                </ol>
              )}
            </Async>
          ) : (
            <p className="muted">The audit history is available to analysts and admins.</p>
          )}
        </Card>
      </div>
    </>
  );
}

function describeAudit(action: string, details: Record<string, unknown>): string {
  switch (action) {
    case "case.status":
      return `changed the status from ${statusLabel(String(details.from ?? "?"))} to ${statusLabel(String(details.to ?? "?"))}`;
    case "case.assign":
      return `assigned the case to ${String(details.to ?? "nobody")}`;
    case "case.note":
      return "added a note";
    case "label.set":
      return `labelled the transaction ${String(details.label ?? "").replace(/_/g, " ")}`;
    case "label.withdraw":
      return `withdrew the ${String(details.label ?? "").replace(/_/g, " ")} label`;
    default:
      return action.replace(/[._]/g, " ");
  }
}

const KEY_FEATURES = 12;

/** The features the detectors cited first (with their baselines), then the rest behind a toggle. */
function FeatureSnapshot({ features, reasons }: { features: Record<string, number | null>; reasons: Map<string, Reason> }) {
  const [all, setAll] = useState(false);
  const rows = Object.entries(features)
    .filter(([, value]) => value !== null)
    .sort(([a], [b]) => Number(reasons.has(b)) - Number(reasons.has(a)) || a.localeCompare(b));
  const shown = all ? rows : rows.slice(0, Math.max(KEY_FEATURES, rows.filter(([n]) => reasons.has(n)).length));
  return (
    <>
      <table className="table table-compact" aria-label="Feature snapshot with baselines">
        <thead>
          <tr>
            <th scope="col">Feature</th>
            <th scope="col" className="num">
              Value
            </th>
            <th scope="col" className="num">
              Baseline
            </th>
          </tr>
        </thead>
        <tbody>
          {shown.map(([name, value]) => {
            const reason = reasons.get(name);
            return (
              <tr key={name} className={reason ? "highlight" : ""}>
                <td title={name}>
                  <span className="muted small">{featureEntity(name)} · </span>
                  {featureLabel(name)}
                </td>
                <td className="num">{formatNumber(value)}</td>
                <td className="num">{reason ? formatNumber(reason.baseline) : ""}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {rows.length > shown.length || all ? (
        <button type="button" className="btn btn-ghost btn-small" onClick={() => setAll(!all)} aria-expanded={all}>
          {all ? "Show the key features only" : `Show all ${rows.length} features`}
        </button>
      ) : null}
    </>
  );
}
