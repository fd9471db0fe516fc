// Analyst rules: the list, a rule's versions, an editor that validates as you type (with the API's
// positioned messages), and a backtest over history before anything is published.
import { useEffect, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";

import { ApiError, unwrap, type Schemas, type Severity } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { Async, Card, Empty, PageHeader, SeverityBadge } from "../components/ui";
import { formatDay, formatPercent, formatTime, relativeTime } from "../lib/format";
import { useApi } from "../lib/useApi";

type Issue = { message: string; line?: number; column?: number; snippet?: string };

export function RulesPage() {
  const { api, can } = useAuth();
  const rules = useApi((signal) => unwrap(api.GET("/v1/rules", { signal })), []);
  return (
    <>
      <PageHeader
        title="Rules"
        subtitle="Analyst-written conditions, versioned and hot-reloaded by the rules detector."
        actions={
          can("rules:write") ? (
            <Link className="btn btn-primary" to="/rules/new">
              New rule
            </Link>
          ) : null
        }
      />
      <section className="card">
        <Async value={rules} empty={(r) => (r.data.length ? null : <Empty title="No rules yet">Write the first one.</Empty>)}>
          {(r) => (
            <table className="table" aria-label="Rules">
              <thead>
                <tr>
                  <th scope="col">Rule</th>
                  <th scope="col">Expression</th>
                  <th scope="col">Severity</th>
                  <th scope="col">Version</th>
                  <th scope="col">State</th>
                  <th scope="col">Updated</th>
                </tr>
              </thead>
              <tbody>
                {r.data.map((rule) => (
                  <tr key={rule.rule_id}>
                    <td>
                      <Link to={`/rules/${rule.rule_id}`}>{rule.name}</Link>
                      <div className="muted small">{rule.rule_id}</div>
                    </td>
                    <td>
                      <code className="expr-inline">{rule.current.expression}</code>
                    </td>
                    <td>
                      <SeverityBadge severity={rule.current.severity} />
                    </td>
                    <td>v{rule.current_version}</td>
                    <td>
                      <span className={`badge ${rule.enabled ? "status-enabled" : "status-disabled"}`}>
                        {rule.enabled ? "enabled" : "disabled"}
                      </span>
                    </td>
                    <td title={rule.updated_at}>{relativeTime(rule.updated_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Async>
      </section>
    </>
  );
}

function issuesFrom(error: unknown): Issue[] {
  if (error instanceof ApiError) {
    const positioned = error.details
      .filter((d) => Array.isArray(d.loc) && d.loc.includes("expression"))
      .map((d) => d as Issue & Schemas["ErrorDetail"])
      .map((d) => ({
        message: d.message ?? error.message,
        ...(typeof d.line === "number" ? { line: d.line } : {}),
        ...(typeof d.column === "number" ? { column: d.column } : {}),
        ...(typeof d.snippet === "string" ? { snippet: d.snippet } : {}),
      }));
    return positioned.length ? positioned : [{ message: error.message }];
  }
  return [{ message: error instanceof Error ? error.message : String(error) }];
}

export function RuleDetailPage() {
  const { ruleId = "" } = useParams();
  const creating = ruleId === "new";
  const { api, can, me } = useAuth();
  const navigate = useNavigate();
  const rule = useApi(
    (signal) =>
      creating ? Promise.resolve(null) : unwrap(api.GET("/v1/rules/{rule_id}", { params: { path: { rule_id: ruleId } }, signal })),
    [ruleId],
  );
  const current = rule.data?.current;
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [expression, setExpression] = useState("");
  const [severity, setSeverity] = useState<Severity>("warning");
  const [newId, setNewId] = useState("");
  const [issues, setIssues] = useState<Issue[]>([]);
  const [checking, setChecking] = useState(false);
  const [saveState, setSaveState] = useState<{ tone: "ok" | "error"; text: string } | null>(null);
  const [viewing, setViewing] = useState<number | null>(null);
  const [backtest, setBacktest] = useState<Schemas["BacktestResult"] | null>(null);
  const [backtestError, setBacktestError] = useState<string | null>(null);
  const [backtesting, setBacktesting] = useState(false);
  const [days, setDays] = useState(7);
  // Rules without a tenant apply everywhere: the API lets only admins change them.
  const globalRule = !creating && rule.data !== undefined && rule.data !== null && rule.data.tenant_id === null;
  const writable = can("rules:write") && (!globalRule || (me?.roles.includes("admin") ?? false));
  const canBacktest = can("rules:write");

  useEffect(() => {
    if (current) {
      setName(current.name);
      setDescription(current.description);
      setExpression(current.expression);
      setSeverity(current.severity);
    }
  }, [current?.rule_id, current?.version]); // eslint-disable-line react-hooks/exhaustive-deps

  // Validate while typing (debounced): the same checker the API runs at save time.
  useEffect(() => {
    if (!canBacktest || !expression.trim()) {
      setIssues([]);
      return undefined;
    }
    const controller = new AbortController();
    const timer = window.setTimeout(() => {
      setChecking(true);
      unwrap(api.POST("/v1/rules:validate", { body: { expression }, signal: controller.signal }))
        .then((result) => setIssues(result.errors))
        .catch((exc: unknown) => {
          if (!controller.signal.aborted) setIssues(issuesFrom(exc));
        })
        .finally(() => !controller.signal.aborted && setChecking(false));
    }, 350);
    return () => {
      controller.abort();
      window.clearTimeout(timer);
    };
  }, [api, expression, canBacktest]);

  async function save(event: FormEvent) {
    event.preventDefault();
    setSaveState(null);
    try {
      if (creating) {
        const created = await unwrap(
          api.POST("/v1/rules", {
            body: { rule_id: newId.trim() || null, name, description, expression, severity, enabled: false },
          }),
        );
        navigate(`/rules/${created.rule_id}`);
        return;
      }
      const saved = await unwrap(
        api.POST("/v1/rules/{rule_id}/versions", {
          params: { path: { rule_id: ruleId } },
          body: { name, description, expression, severity },
        }),
      );
      setSaveState({ tone: "ok", text: `Published version ${saved.current_version}.` });
      rule.reload();
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 422) setIssues(issuesFrom(exc));
      setSaveState({ tone: "error", text: exc instanceof Error ? exc.message : String(exc) });
    }
  }

  async function toggle(enabled: boolean) {
    try {
      await unwrap(api.PATCH("/v1/rules/{rule_id}", { params: { path: { rule_id: ruleId } }, body: { enabled } }));
      rule.reload();
    } catch (exc) {
      setSaveState({ tone: "error", text: exc instanceof Error ? exc.message : String(exc) });
    }
  }

  async function runBacktest() {
    setBacktesting(true);
    setBacktestError(null);
    try {
      const to = new Date();
      const from = new Date(to.getTime() - days * 86_400_000);
      setBacktest(
        await unwrap(
          api.POST("/v1/rules:backtest", {
            body: { expression, tenant_id: rule.data?.tenant_id ?? null, from: from.toISOString(), to: to.toISOString() },
          }),
        ),
      );
    } catch (exc) {
      setBacktest(null);
      setBacktestError(exc instanceof Error ? exc.message : String(exc));
    } finally {
      setBacktesting(false);
    }
  }

  const shown = viewing !== null ? rule.data?.versions.find((v) => v.version === viewing) : undefined;
  const dirty =
    creating ||
    (current !== undefined &&
      (expression !== current.expression || name !== current.name || severity !== current.severity || description !== current.description));

  const editor = (
    <form className="rule-form" onSubmit={save} noValidate>
      {creating ? (
        <label>
          Rule id <span className="muted small">(lower case, digits, - and _; optional)</span>
          <input value={newId} onChange={(e) => setNewId(e.target.value)} pattern="[a-z0-9][a-z0-9_-]*" />
        </label>
      ) : null}
      <label>
        Name
        <input required value={name} onChange={(e) => setName(e.target.value)} disabled={!writable} />
      </label>
      <label>
        Description
        <input value={description} onChange={(e) => setDescription(e.target.value)} disabled={!writable} />
      </label>
      <label htmlFor="rule-expression">Expression</label>
      <textarea
        id="rule-expression"
        className={`expr ${issues.length ? "invalid" : ""}`}
        rows={5}
        spellCheck={false}
        value={expression}
        onChange={(e) => {
          setExpression(e.target.value);
          setSaveState(null);
        }}
        disabled={!canBacktest}
        aria-invalid={issues.length > 0}
        aria-describedby="rule-issues"
      />
      <div id="rule-issues" aria-live="polite" data-testid="rule-issues">
        {issues.length ? (
          <ul className="issues">
            {issues.map((i, n) => (
              <li key={n} className="form-error">
                {i.line ? `Line ${i.line}, column ${i.column}: ` : ""}
                {i.message}
                {i.snippet ? <pre className="snippet">{i.snippet}</pre> : null}
              </li>
            ))}
          </ul>
        ) : expression.trim() && canBacktest ? (
          <p className="form-ok small">{checking ? "Checking…" : "The expression is valid."}</p>
        ) : null}
      </div>
      <label>
        Severity
        <select value={severity} onChange={(e) => setSeverity(e.target.value as Severity)} disabled={!writable}>
          <option value="info">info</option>
          <option value="warning">warning</option>
          <option value="critical">critical</option>
        </select>
      </label>
      {canBacktest ? (
        <div className="form-actions">
          {writable ? (
            <button type="submit" className="btn btn-primary" disabled={!dirty || !name.trim() || !expression.trim()}>
              {creating ? "Create rule (disabled)" : "Publish new version"}
            </button>
          ) : null}
          <button type="button" className="btn" onClick={() => void runBacktest()} disabled={!expression.trim() || backtesting}>
            {backtesting ? "Backtesting…" : "Backtest draft"}
          </button>
          <label className="inline">
            over the last
            <select value={days} onChange={(e) => setDays(Number(e.target.value))}>
              <option value={1}>1 day</option>
              <option value={7}>7 days</option>
              <option value={14}>14 days</option>
              <option value={30}>30 days</option>
            </select>
          </label>
        </div>
      ) : (
        <p className="muted">Your role can read rules but not change them.</p>
      )}
      {canBacktest && !writable ? (
        <p className="muted small">This rule applies to every tenant: only admins publish it. Drafts can still be backtested.</p>
      ) : null}
      {saveState ? (
        <p role={saveState.tone === "error" ? "alert" : "status"} className={saveState.tone === "error" ? "form-error" : "form-ok"}>
          {saveState.text}
        </p>
      ) : null}
    </form>
  );

  return (
    <>
      <PageHeader
        title={creating ? "New rule" : (rule.data?.name ?? "Rule")}
        subtitle={
          <>
            <Link to="/rules">← Rules</Link>
            {rule.data ? ` · ${rule.data.rule_id} · v${rule.data.current_version} · ${rule.data.enabled ? "enabled" : "disabled"}` : ""}
          </>
        }
        actions={
          rule.data && writable ? (
            <button type="button" className="btn" onClick={() => void toggle(!rule.data!.enabled)}>
              {rule.data.enabled ? "Disable" : "Enable"}
            </button>
          ) : null
        }
      />
      <div className="grid-2">
        <Card title={creating ? "Definition" : "Edit (publishes a new version)"}>
          {creating ? editor : <Async value={rule}>{() => editor}</Async>}
        </Card>
        <Card title="Backtest">
          {backtestError ? (
            <p className="form-error" role="alert">
              {backtestError}
            </p>
          ) : backtest ? (
            <BacktestView result={backtest} />
          ) : (
            <Empty title="Run the draft over history">
              See how often it would have fired per day, and its precision against analyst labels, before publishing.
            </Empty>
          )}
        </Card>
        {!creating ? (
          <Card title="Versions" className="span-2">
            <Async value={rule}>
              {(r) => (
                <table className="table table-compact" aria-label="Rule versions">
                  <thead>
                    <tr>
                      <th scope="col">Version</th>
                      <th scope="col">Expression</th>
                      <th scope="col">Severity</th>
                      <th scope="col">Author</th>
                      <th scope="col">Published</th>
                    </tr>
                  </thead>
                  <tbody>
                    {[...r!.versions].reverse().map((v) => (
                      <tr key={v.version} className={v.version === r!.current_version ? "highlight" : ""}>
                        <td>
                          <button type="button" className="link" onClick={() => setViewing(viewing === v.version ? null : v.version)}>
                            v{v.version}
                            {v.version === r!.current_version ? " (current)" : ""}
                          </button>
                        </td>
                        <td>
                          <code className="expr-inline">{v.expression}</code>
                        </td>
                        <td>
                          <SeverityBadge severity={v.severity} />
                        </td>
                        <td>{v.author}</td>
                        <td>{formatTime(v.created_at)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </Async>
            {shown ? (
              <div className="version-view">
                <h3>
                  Version {shown.version}: {shown.name}
                </h3>
                <p className="muted">{shown.description || "No description."}</p>
                <pre className="expr-block">{shown.expression}</pre>
                {writable ? (
                  <button type="button" className="btn btn-small" onClick={() => setExpression(shown.expression)}>
                    Load into the editor
                  </button>
                ) : null}
              </div>
            ) : null}
          </Card>
        ) : null}
      </div>
    </>
  );
}

export function BacktestView({ result }: { result: Schemas["BacktestResult"] }) {
  const days = Object.entries(result.hits_per_day).sort(([a], [b]) => a.localeCompare(b));
  const max = Math.max(1, ...days.map(([, n]) => n));
  return (
    <div className="backtest" data-testid="backtest-result">
      <div className="kpis kpis-small">
        <div className="kpi">
          <div className="kpi-label">Evaluated</div>
          <div className="kpi-value">{result.evaluated.toLocaleString("en-GB")}</div>
        </div>
        <div className="kpi">
          <div className="kpi-label">Hits</div>
          <div className="kpi-value">{result.hits.toLocaleString("en-GB")}</div>
        </div>
        <div className="kpi">
          <div className="kpi-label">Precision</div>
          <div className="kpi-value">{formatPercent(result.precision)}</div>
          <div className="kpi-hint">
            {result.labelled_hits ? `${result.true_positives} of ${result.labelled_hits} labelled hits` : "no labelled hits"}
          </div>
        </div>
        <div className="kpi">
          <div className="kpi-label">Recall</div>
          <div className="kpi-value">{formatPercent(result.recall)}</div>
        </div>
      </div>
      {days.length ? (
        <ul className="bars" aria-label="Hits per day">
          {days.map(([day, n]) => (
            <li key={day}>
              <span className="bar-label">{formatDay(`${day}T12:00:00Z`)}</span>
              <span className="bar-track">
                <span className="bar-fill" style={{ width: `${(n / max) * 100}%` }} />
              </span>
              <span className="bar-value">{n}</span>
            </li>
          ))}
        </ul>
      ) : (
        <Empty title="No hits in this period" />
      )}
    </div>
  );
}
