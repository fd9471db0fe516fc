import { useState, type FormEvent } from "react";

import { unwrap, type Schemas } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { Async, Card, Empty, PageHeader, SeverityBadge } from "../components/ui";
import { formatTime, relativeTime } from "../lib/format";
import { useApi } from "../lib/useApi";

const LABELS = ["severity", "detector_family", "detector_name", "entity_type", "entity_id", "entity", "tenant_id", "alertname"];
type Matcher = Schemas["MatcherIn"];

export function AlertsPage() {
  const { api, can, me } = useAuth();
  const [activeOnly, setActiveOnly] = useState(true);
  const alerts = useApi((signal) => unwrap(api.GET("/v1/alerts", { params: { query: { limit: 50 } }, signal })), [], 10_000);
  const silences = useApi(
    (signal) => unwrap(api.GET("/v1/silences", { params: { query: { active: activeOnly } }, signal })),
    [activeOnly],
    10_000,
  );
  const writable = can("silences:write");

  return (
    <>
      <PageHeader title="Alerts & silences" subtitle="What was sent to Slack and email, and what is muted right now." />
      <div className="grid-2">
        <Card
          title="Silences"
          className="span-2"
          actions={
            <label className="inline small">
              <input type="checkbox" checked={activeOnly} onChange={(e) => setActiveOnly(e.target.checked)} /> active only
            </label>
          }
        >
          {writable ? <SilenceForm onCreated={silences.reload} admin={me?.roles.includes("admin") ?? false} /> : null}
          <Async
            value={silences}
            empty={(s) => (s.data.length ? null : <Empty title={activeOnly ? "Nothing is silenced" : "No silences yet"} />)}
          >
            {(s) => (
              <table className="table table-compact" aria-label="Silences" data-testid="silences">
                <thead>
                  <tr>
                    <th scope="col">Matchers</th>
                    <th scope="col">Comment</th>
                    <th scope="col">Until</th>
                    <th scope="col">By</th>
                    <th scope="col">State</th>
                    {writable ? <th scope="col">Action</th> : null}
                  </tr>
                </thead>
                <tbody>
                  {s.data.map((silence) => (
                    <tr key={silence.silence_id}>
                      <td>
                        {silence.matchers.map((m, i) => (
                          <code key={i} className="matcher">
                            {String(m.label)}
                            {String(m.op ?? "=")}
                            {JSON.stringify(m.value ?? "")}
                          </code>
                        ))}
                      </td>
                      <td>{silence.comment}</td>
                      <td title={silence.ends_at}>{formatTime(silence.ends_at)}</td>
                      <td>{silence.created_by}</td>
                      <td>
                        <span className={`badge ${silence.active ? "status-enabled" : "status-disabled"}`}>
                          {silence.active ? "active" : silence.expired_at ? "expired" : "pending/ended"}
                        </span>
                      </td>
                      {writable ? (
                        <td>
                          {silence.active ? (
                            <button
                              type="button"
                              className="btn btn-small"
                              onClick={() =>
                                void unwrap(
                                  api.POST("/v1/silences/{silence_id}:expire", {
                                    params: { path: { silence_id: silence.silence_id } },
                                  }),
                                ).then(silences.reload, silences.reload)
                              }
                            >
                              Expire now
                            </button>
                          ) : null}
                        </td>
                      ) : null}
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Async>
        </Card>
        <Card title="Notification log" className="span-2">
          <Async value={alerts} empty={(a) => (a.data.length ? null : <Empty title="No notifications sent yet" />)}>
            {(a) => (
              <table className="table table-compact" aria-label="Notification log">
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Alert</th>
                    <th scope="col">Severity</th>
                    <th scope="col">Receiver</th>
                    <th scope="col" className="num">
                      Anomalies
                    </th>
                    <th scope="col">Delivery</th>
                  </tr>
                </thead>
                <tbody>
                  {a.data.map((n) => (
                    <tr key={n.notification_id}>
                      <td title={n.created_at}>{relativeTime(n.created_at)}</td>
                      <td>{n.title}</td>
                      <td>
                        <SeverityBadge severity={n.severity} />
                      </td>
                      <td>{n.receiver}</td>
                      <td className="num">{n.anomaly_count}</td>
                      <td>
                        <span className={`badge delivery-${n.status}`}>{n.status}</span>
                        {n.attempts > 1 ? <span className="muted small"> · {n.attempts} attempts</span> : null}
                        {n.last_error ? <div className="form-error small">{n.last_error}</div> : null}
                      </td>
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

function SilenceForm({ onCreated, admin }: { onCreated: () => void; admin: boolean }) {
  const { api, me } = useAuth();
  const [matchers, setMatchers] = useState<Matcher[]>([{ label: "severity", op: "=", value: "info" }]);
  const [hours, setHours] = useState(2);
  const [comment, setComment] = useState("");
  const [tenant, setTenant] = useState(me?.tenants[0] ?? "");
  const [state, setState] = useState<{ tone: "ok" | "error"; text: string } | null>(null);

  function change(index: number, patch: Partial<Matcher>) {
    setMatchers(matchers.map((m, i) => (i === index ? { ...m, ...patch } : m)));
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    setState(null);
    try {
      await unwrap(
        api.POST("/v1/silences", {
          body: {
            matchers,
            ends_at: new Date(Date.now() + hours * 3600_000).toISOString(),
            comment,
            tenant_id: tenant.trim() || null,
          },
        }),
      );
      setComment("");
      setState({ tone: "ok", text: `Silenced for ${hours} h.` });
      onCreated();
    } catch (exc) {
      setState({ tone: "error", text: exc instanceof Error ? exc.message : String(exc) });
    }
  }

  return (
    <form className="silence-form" onSubmit={submit} aria-label="Create a silence">
      {matchers.map((m, i) => (
        <div className="matcher-row" key={i}>
          <label>
            Label
            <select value={m.label} onChange={(e) => change(i, { label: e.target.value })}>
              {LABELS.map((l) => (
                <option key={l}>{l}</option>
              ))}
            </select>
          </label>
          <label>
            Match
            <select value={m.op ?? "="} onChange={(e) => change(i, { op: e.target.value as Matcher["op"] })}>
              <option value="=">equals</option>
              <option value="!=">differs</option>
              <option value="=~">matches regex</option>
              <option value="!~">does not match</option>
            </select>
          </label>
          <label>
            Value
            <input value={m.value ?? ""} onChange={(e) => change(i, { value: e.target.value })} required />
          </label>
          {matchers.length > 1 ? (
            <button
              type="button"
              className="btn btn-ghost btn-small"
              aria-label={`Remove matcher ${i + 1}`}
              onClick={() => setMatchers(matchers.filter((_, j) => j !== i))}
            >
              ×
            </button>
          ) : null}
        </div>
      ))}
      <div className="matcher-row">
        <button
          type="button"
          className="btn btn-ghost btn-small"
          onClick={() => setMatchers([...matchers, { label: "detector_name", op: "=", value: "" }])}
        >
          + matcher
        </button>
        <label>
          For
          <select value={hours} onChange={(e) => setHours(Number(e.target.value))}>
            {[1, 2, 4, 8, 24, 72].map((h) => (
              <option key={h} value={h}>
                {h} h
              </option>
            ))}
          </select>
        </label>
        <label>
          Tenant{admin ? " (empty = all)" : ""}
          <input value={tenant} onChange={(e) => setTenant(e.target.value)} />
        </label>
        <label className="grow">
          Comment
          <input value={comment} onChange={(e) => setComment(e.target.value)} required placeholder="Why? e.g. planned batch job" />
        </label>
        <button type="submit" className="btn btn-primary" disabled={!comment.trim()}>
          Create silence
        </button>
      </div>
      {state ? (
        <p role={state.tone === "error" ? "alert" : "status"} className={state.tone === "error" ? "form-error" : "form-ok"}>
          {state.text}
        </p>
      ) : null}
    </form>
  );
}
