// Small building blocks every page uses, so loading, empty and error states look the same everywhere.
import type { ReactNode } from "react";

import { ApiError } from "../api/client";
import { statusLabel } from "../lib/format";

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <div className="state state-loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="state state-empty">
      <strong>{title}</strong>
      {children ? <div className="muted">{children}</div> : null}
    </div>
  );
}

export function ErrorState({ error, onRetry }: { error: Error; onRetry?: () => void }) {
  const forbidden = error instanceof ApiError && error.status === 403;
  return (
    <div className="state state-error" role="alert">
      <strong>{forbidden ? "Not available to your role" : "Something went wrong"}</strong>
      <div>{error.message}</div>
      {onRetry && !forbidden ? (
        <button type="button" className="btn btn-small" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}

/** Renders the right state for a loaded value; children only see data. */
export function Async<T>({
  value,
  empty,
  children,
  loadingLabel,
}: {
  value: { data: T | undefined; error: Error | undefined; loading: boolean; reload: () => void };
  empty?: (data: T) => ReactNode | null;
  children: (data: T) => ReactNode;
  loadingLabel?: string;
}) {
  if (value.data === undefined) {
    if (value.error) return <ErrorState error={value.error} onRetry={value.reload} />;
    return <Loading {...(loadingLabel ? { label: loadingLabel } : {})} />;
  }
  const emptyView = empty?.(value.data);
  return (
    <>
      {value.error ? <StaleNotice error={value.error} /> : null}
      {emptyView ?? children(value.data)}
    </>
  );
}

function StaleNotice({ error }: { error: Error }) {
  return (
    <div className="stale" role="status">
      Showing the last figures received: {error.message}
    </div>
  );
}

export function SeverityBadge({ severity }: { severity: string }) {
  return <span className={`badge sev-${severity}`}>{severity}</span>;
}

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge status-${status}`}>{statusLabel(status)}</span>;
}

export function ScoreBar({ score, compact = false }: { score: number; compact?: boolean }) {
  const level = score >= 80 ? "critical" : score >= 50 ? "warning" : "info";
  return (
    <span className="score" title={`score ${score.toFixed(1)} of 100`}>
      {compact ? (
        <span className={`score-dot sev-bg-${level}`} aria-hidden="true" />
      ) : (
        <span className="score-track" aria-hidden="true">
          <span className={`score-fill sev-bg-${level}`} style={{ width: `${Math.max(2, Math.min(100, score))}%` }} />
        </span>
      )}
      <span className="score-value">{score.toFixed(0)}</span>
    </span>
  );
}

export function Card({
  title,
  actions,
  children,
  className,
}: {
  title?: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
  className?: string;
}) {
  return (
    <section className={`card ${className ?? ""}`}>
      {title || actions ? (
        <header className="card-header">
          {title ? <h2>{title}</h2> : <span />}
          {actions}
        </header>
      ) : null}
      <div className="card-body">{children}</div>
    </section>
  );
}

export function PageHeader({ title, subtitle, actions }: { title: string; subtitle?: ReactNode; actions?: ReactNode }) {
  return (
    <header className="page-header">
      <div>
        <h1>{title}</h1>
        {subtitle ? <p className="muted">{subtitle}</p> : null}
      </div>
      {actions ? <div className="page-actions">{actions}</div> : null}
    </header>
  );
}

export function Kpi({
  label,
  value,
  hint,
  tone,
  testId,
}: {
  label: string;
  value: ReactNode;
  hint?: ReactNode;
  tone?: "good" | "bad" | "warn" | "neutral";
  testId?: string;
}) {
  return (
    <div className={`kpi kpi-${tone ?? "neutral"}`} data-testid={testId}>
      <div className="kpi-label">{label}</div>
      <div className="kpi-value">{value}</div>
      {hint ? <div className="kpi-hint">{hint}</div> : null}
    </div>
  );
}
