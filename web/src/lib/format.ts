// Formatting in the analyst's configured zone (the API's display timezone), never the browser's guess.

export function formatTime(iso: string | null | undefined, timeZone = "UTC"): string {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return new Intl.DateTimeFormat("en-GB", {
    timeZone,
    year: "numeric",
    month: "short",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  }).format(date);
}

export function formatShortTime(iso: string, timeZone = "UTC"): string {
  return new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", minute: "2-digit", hour12: false }).format(
    new Date(iso),
  );
}

export function formatDay(iso: string, timeZone = "UTC"): string {
  return new Intl.DateTimeFormat("en-GB", { timeZone, month: "short", day: "2-digit" }).format(new Date(iso));
}

export function relativeTime(iso: string, now: number = Date.now()): string {
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (seconds < 0) return "in the future";
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}

export function formatMoney(amount: string | number | null | undefined, currency?: string | null): string {
  if (amount === null || amount === undefined || amount === "") return "—";
  const value = typeof amount === "number" ? amount : Number(amount);
  if (!Number.isFinite(value)) return String(amount);
  if (!currency) return value.toLocaleString("en-GB", { maximumFractionDigits: 2 });
  try {
    return new Intl.NumberFormat("en-GB", { style: "currency", currency }).format(value);
  } catch {
    return `${value.toFixed(2)} ${currency}`;
  }
}

export function formatNumber(value: number | string | null | undefined, digits = 2): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string") return value;
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-GB");
  return value.toLocaleString("en-GB", { maximumFractionDigits: digits });
}

export function formatPercent(value: number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  return `${(value * 100).toFixed(value >= 0.995 || value === 0 ? 0 : 1)}%`;
}

/** "account_amount_robust_zscore" -> "Amount robust z-score" (entity shown separately). */
export function featureLabel(name: string): string {
  const words = name.split("_");
  const entities = ["account", "card", "merchant", "device", "ip"];
  const rest = words[0] && entities.includes(words[0]) ? words.slice(1) : words;
  const text = rest
    .join(" ")
    .replace(/\bzscore\b/g, "z-score")
    .replace(/\bmad\b/g, "MAD")
    .replace(/\bkmh\b/g, "km/h")
    .replace(/\b(\d+)(h|d)\b/g, "$1 $2")
    .replace(/\bstd\b/g, "std dev");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function featureEntity(name: string): string {
  const first = name.split("_")[0] ?? "";
  return ["account", "card", "merchant", "device", "ip"].includes(first) ? first : "transaction";
}

export const CASE_STATUS_LABELS: Record<string, string> = {
  open: "Open",
  investigating: "Investigating",
  confirmed_fraud: "Confirmed fraud",
  false_positive: "False positive",
  expected: "Expected",
};

export function statusLabel(status: string): string {
  return CASE_STATUS_LABELS[status] ?? status.replace(/_/g, " ");
}

/** Start of the current ISO week (Monday 00:00) in `timeZone`, as an ISO instant. */
export function startOfWeek(now: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    weekday: "short",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  }).formatToParts(now);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "0";
  const weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].indexOf(get("weekday"));
  const elapsedToday =
    ((Number(get("hour")) % 24) * 3600 + Number(get("minute")) * 60 + Number(get("second"))) * 1000 +
    now.getMilliseconds();
  const start = now.getTime() - elapsedToday - Math.max(0, weekday) * 86_400_000;
  return new Date(start).toISOString();
}

/** The dashboard path of a transaction: ids are unique per tenant only, so the tenant travels with it. */
export function transactionPath(tenantId: string, transactionId: string): string {
  return `/transactions/${encodeURIComponent(transactionId)}?tenant_id=${encodeURIComponent(tenantId)}`;
}
