// Hand-rolled SVG charts: a few hundred points at most, no library, stable keys so a refresh
// redraws in place instead of flashing.
import { formatDay, formatMoney, formatShortTime } from "../lib/format";

function compactNumber(value: number): string {
  return new Intl.NumberFormat("en-GB", { notation: "compact", maximumFractionDigits: 1 }).format(value);
}

const PALETTE: Record<string, string> = {
  critical: "#b91c1c",
  warning: "#d97706",
  info: "#2563eb",
  statistical: "#2563eb",
  rules: "#7c3aed",
  ml: "#059669",
  aggregate: "#db2777",
};
const FALLBACK = ["#2563eb", "#7c3aed", "#059669", "#db2777", "#d97706", "#0891b2", "#65a30d", "#9333ea"];

export function colorFor(group: string, index: number): string {
  return PALETTE[group] ?? FALLBACK[index % FALLBACK.length] ?? "#64748b";
}

export interface TrendPoint {
  bucket_start: string;
  group: string;
  count: number;
}

export function TrendChart({
  points,
  bucket,
  timeZone,
  height = 170,
}: {
  points: TrendPoint[];
  bucket: "hour" | "day";
  timeZone: string;
  height?: number;
}) {
  const buckets = [...new Set(points.map((p) => p.bucket_start))].sort();
  const groups = [...new Set(points.map((p) => p.group))].sort(severityFirst);
  const totals = buckets.map((b) => points.filter((p) => p.bucket_start === b).reduce((s, p) => s + p.count, 0));
  const max = Math.max(1, ...totals);
  const width = 720;
  const pad = { left: 40, right: 8, top: 8, bottom: 24 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(1, buckets.length);
  const barW = Math.max(2, step * 0.75);
  const ticks = niceTicks(max);
  const labelEvery = Math.ceil(buckets.length / 8);
  const summary = groups
    .map((g) => `${g}: ${points.filter((p) => p.group === g).reduce((s, p) => s + p.count, 0)}`)
    .join(", ");

  return (
    <figure className="chart">
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label={`Anomalies per ${bucket}, stacked by group. Totals: ${summary || "none"}`}
      >
        {ticks.map((t) => {
          const y = pad.top + plotH - (t / max) * plotH;
          return (
            <g key={`tick-${t}`}>
              <line x1={pad.left} x2={width - pad.right} y1={y} y2={y} className="grid" />
              <text x={pad.left - 6} y={y + 4} textAnchor="end" className="axis">
                {t}
              </text>
            </g>
          );
        })}
        {buckets.map((b, i) => {
          let y = pad.top + plotH;
          const x = pad.left + i * step + (step - barW) / 2;
          return (
            <g key={b}>
              {groups.map((g, gi) => {
                const count = points.find((p) => p.bucket_start === b && p.group === g)?.count ?? 0;
                if (!count) return null;
                const h = (count / max) * plotH;
                y -= h;
                return (
                  <rect key={g} x={x} y={y} width={barW} height={h} fill={colorFor(g, gi)}>
                    <title>{`${bucket === "hour" ? formatShortTime(b, timeZone) : formatDay(b, timeZone)} · ${g}: ${count}`}</title>
                  </rect>
                );
              })}
              {i % labelEvery === 0 ? (
                <text x={x + barW / 2} y={height - 6} textAnchor="middle" className="axis">
                  {bucket === "hour" ? formatShortTime(b, timeZone) : formatDay(b, timeZone)}
                </text>
              ) : null}
            </g>
          );
        })}
      </svg>
      <figcaption className="legend">
        {groups.map((g, gi) => (
          <span key={g} className="legend-item">
            <span className="swatch" style={{ background: colorFor(g, gi) }} aria-hidden="true" />
            {g}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

function severityFirst(a: string, b: string): number {
  const order = ["critical", "warning", "info"];
  const ia = order.indexOf(a);
  const ib = order.indexOf(b);
  if (ia !== -1 || ib !== -1) return (ia === -1 ? 9 : ia) - (ib === -1 ? 9 : ib);
  return a.localeCompare(b);
}

function niceTicks(max: number): number[] {
  const raw = max / 4;
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(1, raw)));
  const step = Math.max(1, Math.ceil(raw / magnitude) * magnitude);
  const ticks: number[] = [];
  for (let t = 0; t <= max; t += step) ticks.push(t);
  return ticks;
}

export interface TimelineTransaction {
  transaction_id: string;
  occurred_at: string;
  amount: string;
  currency: string;
}

/** Amounts over time for one entity; anomalous transactions are red diamonds, the current one is ringed. */
export function TimelineChart({
  transactions,
  anomalousIds,
  currentId,
  timeZone,
  height = 190,
}: {
  transactions: TimelineTransaction[];
  anomalousIds: Set<string>;
  currentId?: string;
  timeZone: string;
  height?: number;
}) {
  const rows = transactions
    .map((t) => ({ ...t, time: new Date(t.occurred_at).getTime(), value: Number(t.amount) }))
    .filter((t) => Number.isFinite(t.value))
    .sort((a, b) => a.time - b.time);
  const width = 720;
  const pad = { left: 56, right: 12, top: 10, bottom: 24 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const t0 = rows[0]?.time ?? 0;
  const t1 = rows[rows.length - 1]?.time ?? 1;
  const span = Math.max(1, t1 - t0);
  const max = Math.max(1, ...rows.map((r) => r.value));
  const x = (t: number) => pad.left + ((t - t0) / span) * plotW;
  const y = (v: number) => pad.top + plotH - (v / max) * plotH;
  const path = rows.map((r, i) => `${i ? "L" : "M"}${x(r.time).toFixed(1)},${y(r.value).toFixed(1)}`).join(" ");
  const flagged = rows.filter((r) => anomalousIds.has(r.transaction_id)).length;
  const currencies = new Set(rows.map((r) => r.currency));
  const currency = currencies.size === 1 ? rows[0]?.currency : undefined;
  const dayLabels = rows.length > 1 && span > 36 * 3600_000;

  return (
    <figure className="chart">
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label={`${rows.length} transactions over time, ${flagged} flagged as anomalous`}
      >
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={pad.left} x2={width - pad.right} y1={y(max * f)} y2={y(max * f)} className="grid" />
            <text x={pad.left - 6} y={y(max * f) + 4} textAnchor="end" className="axis">
              {compactNumber(max * f)}
            </text>
          </g>
        ))}
        {rows.length > 1 ? (
          <>
            <text x={pad.left} y={height - 6} className="axis">
              {dayLabels ? formatDay(rows[0]!.occurred_at, timeZone) : formatShortTime(rows[0]!.occurred_at, timeZone)}
            </text>
            <text x={width - pad.right} y={height - 6} textAnchor="end" className="axis">
              {dayLabels
                ? formatDay(rows[rows.length - 1]!.occurred_at, timeZone)
                : formatShortTime(rows[rows.length - 1]!.occurred_at, timeZone)}
            </text>
          </>
        ) : null}
        <path d={path} className="timeline-line" />
        {rows.map((r) => {
          const anomalous = anomalousIds.has(r.transaction_id);
          const cx = x(r.time);
          const cy = y(r.value);
          const label = `${formatMoney(r.value, r.currency)} at ${formatShortTime(r.occurred_at, timeZone)}${anomalous ? " (anomalous)" : ""}`;
          return (
            <g key={r.transaction_id}>
              {r.transaction_id === currentId ? <circle cx={cx} cy={cy} r={9} className="timeline-current" /> : null}
              {anomalous ? (
                <path d={`M${cx},${cy - 6} L${cx + 6},${cy} L${cx},${cy + 6} L${cx - 6},${cy} Z`} className="timeline-anomaly">
                  <title>{label}</title>
                </path>
              ) : (
                <circle cx={cx} cy={cy} r={3} className="timeline-point">
                  <title>{label}</title>
                </circle>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption className="legend">
        <span className="legend-item">
          <span className="swatch swatch-point" aria-hidden="true" /> transaction{currency ? ` (${currency})` : ""}
        </span>
        <span className="legend-item">
          <span className="swatch swatch-anomaly" aria-hidden="true" /> anomalous
        </span>
        {currentId ? (
          <span className="legend-item">
            <span className="swatch swatch-current" aria-hidden="true" /> this transaction
          </span>
        ) : null}
      </figcaption>
    </figure>
  );
}
