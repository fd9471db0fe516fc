// The work queue: cases (default) or raw anomalies, with the API's filters, sort and cursor paging.
// The URL holds every filter, so a view can be bookmarked, shared or saved by name.
import { useEffect, useMemo, useRef, useState, type KeyboardEvent, type RefObject } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router-dom";

import { unwrap, type AnomalySummary, type CaseSummary } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { Async, Empty, ErrorState, Loading, PageHeader, ScoreBar, SeverityBadge, StatusBadge } from "../components/ui";
import { formatMoney, formatTime, transactionPath, CASE_STATUS_LABELS } from "../lib/format";
import { useApi } from "../lib/useApi";

const SEVERITIES = ["critical", "warning", "info"] as const;
const CASE_STATUSES = ["open", "investigating", "confirmed_fraud", "false_positive", "expected"] as const;
const ANOMALY_STATUSES = ["open", "acknowledged", "resolved"] as const;
const ENTITY_TYPES = ["account", "card", "merchant", "device", "ip"] as const;
const FAMILIES = ["statistical", "rules", "ml", "aggregate"] as const;
const PAGE_SIZE = 25;
const SAVED_KEY = "vigil.savedViews";

type View = "cases" | "anomalies";

function toIso(local: string | null): string | undefined {
  if (!local) return undefined;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function some<T extends string>(params: URLSearchParams, key: string, allowed: readonly T[]): T[] | undefined {
  const values = params.getAll(key).filter((v): v is T => (allowed as readonly string[]).includes(v));
  return values.length ? values : undefined;
}

function one<T extends string>(params: URLSearchParams, key: string, allowed: readonly T[]): T | undefined {
  const value = params.get(key);
  return value && (allowed as readonly string[]).includes(value) ? (value as T) : undefined;
}

/** Where a queue row opens: its case, or (an anomaly) its transaction's case. */
function rowPath(row: CaseSummary | AnomalySummary): string {
  return "case_id" in row ? `/cases/${row.case_id}` : transactionPath(row.tenant_id, row.transaction_id);
}

/** A free-text filter kept in the URL, applied on Enter or when the field loses focus. */
function UrlTextInput({
  name,
  params,
  update,
  inputRef,
  type,
  placeholder,
}: {
  name: string;
  params: URLSearchParams;
  update: (changes: Record<string, string | null>) => void;
  inputRef?: RefObject<HTMLInputElement | null>;
  type?: "search";
  placeholder: string;
}) {
  const value = params.get(name) ?? "";
  const apply = (text: string) => update({ [name]: text.trim() });
  return (
    <input
      ref={inputRef}
      type={type}
      defaultValue={value}
      key={`${name}-${value}`} // a new URL value (back, a saved view) replaces what was typed
      onBlur={(e) => apply(e.target.value)}
      onKeyDown={(e) => e.key === "Enter" && apply(e.currentTarget.value)}
      placeholder={placeholder}
    />
  );
}

interface SavedView {
  name: string;
  query: string;
}

function loadSaved(): SavedView[] {
  try {
    const parsed: unknown = JSON.parse(window.localStorage.getItem(SAVED_KEY) ?? "[]");
    return Array.isArray(parsed) ? (parsed as SavedView[]) : [];
  } catch {
    return [];
  }
}

export function QueuePage() {
  const { api, me } = useAuth();
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const view: View = params.get("view") === "anomalies" ? "anomalies" : "cases";
  const cursor = params.get("cursor") ?? undefined;
  const [previous, setPrevious] = useState<string[]>([]);
  const [selected, setSelected] = useState(0);
  const [saved, setSaved] = useState<SavedView[]>(loadSaved);
  const table = useRef<HTMLTableElement>(null);
  const search = useRef<HTMLInputElement>(null);
  const key = params.toString();
  // An admin (every tenant) or an analyst of several tenants sees which tenant a row is, and may filter by it:
  // transaction ids are unique per tenant only, so two rows can carry the same one.
  const myTenants = me?.tenants ?? [];
  const multiTenant = myTenants.length !== 1;

  const cases = useApi(
    (signal) =>
      view !== "cases"
        ? Promise.resolve(null)
        : unwrap(
            api.GET("/v1/cases", {
              params: {
                query: {
                  tenant_id: params.get("tenant_id") || undefined,
                  status: some(params, "status", CASE_STATUSES),
                  severity: some(params, "severity", SEVERITIES),
                  entity_type: one(params, "entity_type", ENTITY_TYPES),
                  entity_id: params.get("entity_id") || undefined,
                  assignee: params.get("assignee") || undefined,
                  from: toIso(params.get("from")),
                  to: toIso(params.get("to")),
                  sort: one(params, "sort", ["-event_time", "event_time", "-max_score"] as const),
                  cursor,
                  limit: PAGE_SIZE,
                },
              },
              signal,
            }),
          ),
    [key],
    5000,
  );
  const anomalies = useApi(
    (signal) =>
      view !== "anomalies"
        ? Promise.resolve(null)
        : unwrap(
            api.GET("/v1/anomalies", {
              params: {
                query: {
                  tenant_id: params.get("tenant_id") || undefined,
                  status: some(params, "status", ANOMALY_STATUSES),
                  severity: some(params, "severity", SEVERITIES),
                  detector_family: one(params, "detector_family", FAMILIES),
                  entity_type: one(params, "entity_type", ENTITY_TYPES),
                  entity_id: params.get("entity_id") || undefined,
                  min_score: params.get("min_score") ? Number(params.get("min_score")) : undefined,
                  q: params.get("q") || undefined,
                  from: toIso(params.get("from")),
                  to: toIso(params.get("to")),
                  sort: one(params, "sort", ["-event_time", "event_time", "-score", "score"] as const),
                  cursor,
                  limit: PAGE_SIZE,
                },
              },
              signal,
            }),
          ),
    [key],
    5000,
  );
  const loaded = view === "cases" ? cases : anomalies;
  const rows: (CaseSummary | AnomalySummary)[] = (view === "cases" ? cases.data?.data : anomalies.data?.data) ?? [];
  const nextCursor = (view === "cases" ? cases.data?.next_cursor : anomalies.data?.next_cursor) ?? null;

  useEffect(() => setSelected(0), [key]);

  function update(changes: Record<string, string | string[] | null>) {
    const next = new URLSearchParams(params);
    for (const [name, value] of Object.entries(changes)) {
      next.delete(name);
      if (Array.isArray(value)) value.forEach((v) => next.append(name, v));
      else if (value) next.set(name, value);
    }
    if (!("cursor" in changes)) {
      next.delete("cursor");
      setPrevious([]);
    }
    setParams(next);
  }

  function toggle(name: string, value: string) {
    const values = params.getAll(name);
    update({ [name]: values.includes(value) ? values.filter((v) => v !== value) : [...values, value] });
  }

  function open(row: CaseSummary | AnomalySummary) {
    navigate(rowPath(row));
  }

  function onKey(event: KeyboardEvent) {
    if (event.key === "ArrowDown" || event.key === "j") {
      event.preventDefault();
      setSelected((s) => Math.min(rows.length - 1, s + 1));
    } else if (event.key === "ArrowUp" || event.key === "k") {
      event.preventDefault();
      setSelected((s) => Math.max(0, s - 1));
    } else if (event.key === "Enter" || event.key === "o") {
      const row = rows[selected];
      if (row) open(row);
    }
  }

  useEffect(() => {
    function slash(event: globalThis.KeyboardEvent) {
      const target = event.target as HTMLElement | null;
      if (event.key === "/" && target && !["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) {
        event.preventDefault();
        search.current?.focus();
      }
    }
    window.addEventListener("keydown", slash);
    return () => window.removeEventListener("keydown", slash);
  }, []);

  useEffect(() => {
    table.current?.querySelector(`[data-row="${selected}"]`)?.scrollIntoView?.({ block: "nearest" });
  }, [selected]);

  function saveView() {
    const name = window.prompt("Name this view", "");
    if (!name) return;
    const query = new URLSearchParams(params);
    query.delete("cursor");
    const next = [...saved.filter((s) => s.name !== name), { name, query: query.toString() }];
    setSaved(next);
    window.localStorage.setItem(SAVED_KEY, JSON.stringify(next));
  }

  function removeView(name: string) {
    const next = saved.filter((s) => s.name !== name);
    setSaved(next);
    window.localStorage.setItem(SAVED_KEY, JSON.stringify(next));
  }

  const statuses = view === "cases" ? CASE_STATUSES : ANOMALY_STATUSES;
  const sortOptions =
    view === "cases"
      ? [
          ["-event_time", "Newest first"],
          ["event_time", "Oldest first"],
          ["-max_score", "Highest score"],
        ]
      : [
          ["-event_time", "Newest first"],
          ["event_time", "Oldest first"],
          ["-score", "Highest score"],
          ["score", "Lowest score"],
        ];
  const activeFilters = [...params.keys()].filter((k) => !["view", "cursor", "sort"].includes(k)).length;

  return (
    <>
      <PageHeader
        title="Queue"
        subtitle={`${me?.permissions.includes("cases:write") ? "Pick the next case" : "Browse cases"} · ↑/↓ or j/k to move, Enter to open, / to search`}
        actions={
          <div className="segmented" role="tablist" aria-label="What to list">
            {(["cases", "anomalies"] as const).map((v) => (
              <button
                key={v}
                type="button"
                role="tab"
                aria-selected={view === v}
                className={view === v ? "active" : ""}
                onClick={() => setParams(new URLSearchParams(v === "cases" ? {} : { view: v }))}
              >
                {v === "cases" ? "Cases" : "Anomalies"}
              </button>
            ))}
          </div>
        }
      />
      <section className="filters card" aria-label="Filters">
        <fieldset>
          <legend>Severity</legend>
          {SEVERITIES.map((s) => (
            <label key={s} className="chip">
              <input type="checkbox" checked={params.getAll("severity").includes(s)} onChange={() => toggle("severity", s)} />
              {s}
            </label>
          ))}
        </fieldset>
        <fieldset>
          <legend>Status</legend>
          {statuses.map((s) => (
            <label key={s} className="chip">
              <input type="checkbox" checked={params.getAll("status").includes(s)} onChange={() => toggle("status", s)} />
              {CASE_STATUS_LABELS[s] ?? s}
            </label>
          ))}
        </fieldset>
        <div className="filter-row">
          {multiTenant ? (
            <label>
              Tenant
              {myTenants.length ? (
                <select value={params.get("tenant_id") ?? ""} onChange={(e) => update({ tenant_id: e.target.value })}>
                  <option value="">any</option>
                  {myTenants.map((t) => (
                    <option key={t}>{t}</option>
                  ))}
                </select>
              ) : (
                <UrlTextInput name="tenant_id" params={params} update={update} placeholder="any" />
              )}
            </label>
          ) : null}
          <label>
            Entity type
            <select value={params.get("entity_type") ?? ""} onChange={(e) => update({ entity_type: e.target.value })}>
              <option value="">any</option>
              {ENTITY_TYPES.map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
          </label>
          <label>
            Entity id
            <UrlTextInput
              name="entity_id"
              params={params}
              update={update}
              inputRef={view === "cases" ? search : undefined}
              placeholder="e.g. acc-000123"
            />
          </label>
          {view === "anomalies" ? (
            <>
              <label>
                Detector family
                <select
                  value={params.get("detector_family") ?? ""}
                  onChange={(e) => update({ detector_family: e.target.value })}
                >
                  <option value="">any</option>
                  {FAMILIES.map((f) => (
                    <option key={f}>{f}</option>
                  ))}
                </select>
              </label>
              <label>
                Min score
                <input
                  type="number"
                  min={0}
                  max={100}
                  defaultValue={params.get("min_score") ?? ""}
                  key={`min-${params.get("min_score") ?? ""}`}
                  onBlur={(e) => update({ min_score: e.target.value })}
                />
              </label>
              <label>
                Search
                <UrlTextInput
                  name="q"
                  params={params}
                  update={update}
                  inputRef={search}
                  type="search"
                  placeholder="id, detector or reason"
                />
              </label>
            </>
          ) : null}
          <label>
            From
            <input type="datetime-local" value={params.get("from") ?? ""} onChange={(e) => update({ from: e.target.value })} />
          </label>
          <label>
            To
            <input type="datetime-local" value={params.get("to") ?? ""} onChange={(e) => update({ to: e.target.value })} />
          </label>
          <label>
            Sort
            <select value={params.get("sort") ?? "-event_time"} onChange={(e) => update({ sort: e.target.value })}>
              {sortOptions.map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          </label>
        </div>
        <div className="filter-actions">
          <button type="button" className="btn btn-small" onClick={saveView}>
            Save view
          </button>
          {activeFilters ? (
            <button
              type="button"
              className="btn btn-small btn-ghost"
              onClick={() => setParams(new URLSearchParams(view === "cases" ? {} : { view }))}
            >
              Clear {activeFilters} filter{activeFilters > 1 ? "s" : ""}
            </button>
          ) : null}
          {saved.length ? (
            <span className="saved-views">
              Saved:
              {saved.map((s) => (
                <span key={s.name} className="saved-view">
                  <Link to={`/queue?${s.query}`}>{s.name}</Link>
                  <button type="button" aria-label={`Delete saved view ${s.name}`} onClick={() => removeView(s.name)}>
                    ×
                  </button>
                </span>
              ))}
            </span>
          ) : null}
        </div>
      </section>

      <section className="card">
        {loaded.data === undefined ? (
          loaded.error ? (
            <ErrorState error={loaded.error} onRetry={loaded.reload} />
          ) : (
            <Loading />
          )
        ) : rows.length === 0 ? (
          <Empty title={view === "cases" ? "No cases match" : "No anomalies match"}>
            {activeFilters ? "Loosen the filters to see more." : "The pipeline has not flagged anything yet."}
          </Empty>
        ) : (
          <table
            ref={table}
            className="table queue-table"
            tabIndex={0}
            onKeyDown={onKey}
            aria-label={view === "cases" ? "Cases" : "Anomalies"}
            aria-activedescendant={`row-${selected}`}
            data-testid="queue-table"
          >
            <thead>
              <tr>
                <th scope="col">Event time</th>
                {multiTenant ? <th scope="col">Tenant</th> : null}
                <th scope="col">Entity</th>
                <th scope="col">{view === "cases" ? "Anomalies" : "Detector"}</th>
                <th scope="col">Severity</th>
                <th scope="col">Score</th>
                {view === "anomalies" ? (
                  <th scope="col" className="num">
                    Amount
                  </th>
                ) : null}
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row, index) => (
                <tr
                  key={"case_id" in row ? row.case_id : row.anomaly_id}
                  id={`row-${index}`}
                  data-row={index}
                  aria-selected={index === selected}
                  className={index === selected ? "selected" : ""}
                  onClick={() => open(row)}
                >
                  <td>{formatTime(row.event_time)}</td>
                  {multiTenant ? <td>{row.tenant_id}</td> : null}
                  <td>
                    <Link
                      to={rowPath(row)}
                      onClick={(e) => e.stopPropagation()}
                      tabIndex={-1}
                    >
                      {row.entity_type} {row.entity_id}
                    </Link>
                  </td>
                  <td>{"case_id" in row ? row.anomaly_count : `${row.detector_family} · ${row.detector_name}`}</td>
                  <td>
                    <SeverityBadge severity={"case_id" in row ? row.max_severity : row.severity} />
                  </td>
                  <td>
                    <ScoreBar score={"case_id" in row ? row.max_score : row.score} />
                  </td>
                  {"case_id" in row ? null : <td className="num">{formatMoney(row.amount, row.currency)}</td>}
                  <td>
                    <StatusBadge status={row.status} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <nav className="pager" aria-label="Pages">
          <button
            type="button"
            className="btn btn-small"
            disabled={!cursor}
            onClick={() => {
              const stack = [...previous];
              const back = stack.pop() ?? null;
              setPrevious(stack);
              update({ cursor: back });
            }}
          >
            ← Previous
          </button>
          <span className="muted small">
            {rows.length ? `${rows.length} shown` : ""}
            {loaded.error && loaded.data !== undefined ? ` · ${loaded.error.message}` : ""}
          </span>
          <button
            type="button"
            className="btn btn-small"
            disabled={!nextCursor}
            onClick={() => {
              setPrevious([...previous, cursor ?? ""]);
              update({ cursor: nextCursor });
            }}
          >
            Next →
          </button>
        </nav>
      </section>
    </>
  );
}

/** `/transactions/:id` opens that transaction's case (anomaly rows and alerts link by transaction). */
export function TransactionRedirect() {
  const { transactionId = "" } = useParams();
  const [search] = useSearchParams();
  const tenantId = search.get("tenant_id") ?? undefined; // ids are unique per tenant only
  const { api } = useAuth();
  const navigate = useNavigate();
  const tx = useApi(
    (signal) =>
      unwrap(
        api.GET("/v1/transactions/{transaction_id}", {
          params: { path: { transaction_id: transactionId }, query: { tenant_id: tenantId } },
          signal,
        }),
      ),
    [transactionId, tenantId],
  );
  const caseId = tx.data?.case?.case_id;
  useEffect(() => {
    if (caseId) navigate(`/cases/${caseId}`, { replace: true });
  }, [caseId, navigate]);
  const message = useMemo(
    () => (tx.data && !caseId ? "This transaction has no case: no detector flagged it." : null),
    [tx.data, caseId],
  );
  return (
    <Async value={tx}>
      {() => (message ? <Empty title="No case">{message}</Empty> : <Loading label="Opening the case…" />)}
    </Async>
  );
}
