import { useState } from "react";

import { unwrap } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { Async, Card, Empty, PageHeader } from "../components/ui";
import { formatNumber, formatTime } from "../lib/format";
import { useApi } from "../lib/useApi";

const ALIAS = "champion";

export function ModelsPage() {
  const { api, can } = useAuth();
  const models = useApi((signal) => unwrap(api.GET("/v1/models", { signal })), []);
  const [message, setMessage] = useState<{ tone: "ok" | "error"; text: string } | null>(null);
  const admin = can("models:write");

  async function act(run: () => Promise<{ name: string; alias: string; version: string; previous_version: string | null }>) {
    setMessage(null);
    try {
      const change = await run();
      setMessage({
        tone: "ok",
        text: `${change.name}@${change.alias} now serves version ${change.version} (was ${change.previous_version ?? "none"}).`,
      });
      models.reload();
    } catch (exc) {
      setMessage({ tone: "error", text: exc instanceof Error ? exc.message : String(exc) });
    }
  }

  return (
    <>
      <PageHeader
        title="Models"
        subtitle={`Registered in MLflow; detectors serve the @${ALIAS} alias and hot-swap without restarting.`}
      />
      {message ? (
        <p role={message.tone === "error" ? "alert" : "status"} className={message.tone === "error" ? "form-error" : "form-ok"}>
          {message.text}
        </p>
      ) : null}
      <Async
        value={models}
        empty={(m) => (m.data.length ? null : <Empty title="No registered models">Train one with `vigil train`.</Empty>)}
      >
        {(m) => (
          <div className="stack">
            {m.data.map((model) => {
              const champion = model.aliases[ALIAS];
              const metricNames = pickMetrics(model.versions.flatMap((v) => Object.keys(v.metrics)));
              return (
                <Card
                  key={model.name}
                  title={model.name}
                  actions={
                    admin && champion ? (
                      <button
                        type="button"
                        className="btn btn-small"
                        onClick={() =>
                          void act(() =>
                            unwrap(api.POST("/v1/models/{name}:rollback", { params: { path: { name: model.name } }, body: { alias: ALIAS } })),
                          )
                        }
                      >
                        Roll back @{ALIAS}
                      </button>
                    ) : null
                  }
                >
                  <p className="muted">{model.description || "No description."}</p>
                  {model.versions.length === 0 ? (
                    <Empty title="No versions registered yet" />
                  ) : (
                  <table className="table table-compact" aria-label={`Versions of ${model.name}`}>
                    <thead>
                      <tr>
                        <th scope="col">Version</th>
                        <th scope="col">Aliases</th>
                        <th scope="col">Created</th>
                        {metricNames.map((n) => (
                          <th key={n} scope="col" className="num">
                            {n}
                          </th>
                        ))}
                        {admin ? <th scope="col">Action</th> : null}
                      </tr>
                    </thead>
                    <tbody>
                      {[...model.versions].reverse().map((v) => (
                        <tr key={v.version} className={v.version === champion ? "highlight" : ""}>
                          <td>v{v.version}</td>
                          <td>
                            {v.aliases.map((a) => (
                              <span key={a} className={`badge ${a === ALIAS ? "status-confirmed_fraud" : ""}`}>
                                {a === ALIAS ? "★ champion" : a}
                              </span>
                            ))}
                          </td>
                          <td>{formatTime(v.created_at)}</td>
                          {metricNames.map((n) => (
                            <td key={n} className="num">
                              {formatNumber(v.metrics[n], 3)}
                            </td>
                          ))}
                          {admin ? (
                            <td>
                              {v.version !== champion ? (
                                <button
                                  type="button"
                                  className="btn btn-small"
                                  onClick={() =>
                                    void act(() =>
                                      unwrap(
                                        api.POST("/v1/models/{name}:promote", {
                                          params: { path: { name: model.name } },
                                          body: { version: v.version, alias: ALIAS },
                                        }),
                                      ),
                                    )
                                  }
                                >
                                  Promote to champion
                                </button>
                              ) : (
                                <span className="muted small">serving</span>
                              )}
                            </td>
                          ) : null}
                        </tr>
                      ))}
                    </tbody>
                  </table>
                  )}
                </Card>
              );
            })}
          </div>
        )}
      </Async>
      {!admin ? <p className="muted small">Promotion and rollback are for admins.</p> : null}
    </>
  );
}

// Quality figures first (what a promotion decision rests on), bookkeeping counts last.
const METRIC_PRIORITY = [/average_precision|^ap\b|pr_auc/i, /precision/i, /recall/i, /roc_auc|auc/i, /f1/i];

export function pickMetrics(names: string[], limit = 5): string[] {
  const unique = [...new Set(names)].sort();
  const rank = (name: string) => {
    const index = METRIC_PRIORITY.findIndex((pattern) => pattern.test(name));
    if (index !== -1) return index;
    return name.startsWith("count_") ? 99 : 50;
  };
  return unique.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, limit);
}
