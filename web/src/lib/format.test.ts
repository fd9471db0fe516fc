import { featureLabel, formatMoney, formatPercent, startOfWeek, transactionPath } from "./format";
import { sumMetric } from "../pages/Health";
import { pickMetrics } from "../pages/Models";

test("the week starts on Monday midnight in the configured zone, not the browser's", () => {
  // Sunday 23:30 UTC is already Monday 00:30 in Paris: Paris' week started 30 minutes ago.
  const now = new Date("2026-11-22T23:30:00Z");
  expect(startOfWeek(now, "Europe/Paris")).toBe("2026-11-22T23:00:00.000Z");
  expect(startOfWeek(now, "UTC")).toBe("2026-11-16T00:00:00.000Z");
});

test("feature names read as words", () => {
  expect(featureLabel("account_amount_robust_zscore")).toBe("Amount robust z-score");
  expect(featureLabel("card_count_1h")).toBe("Count 1 h");
  expect(featureLabel("account_geo_velocity_kmh")).toBe("Geo velocity km/h");
});

test("money and percentages", () => {
  expect(formatMoney("1234.5", "EUR")).toBe("€1,234.50");
  expect(formatMoney(null, "EUR")).toBe("—");
  expect(formatPercent(0.5)).toBe("50.0%");
  expect(formatPercent(null)).toBe("—");
});

test("Prometheus counters are summed across label sets", () => {
  const text = [
    "# HELP vigil_http_requests_total x",
    'vigil_http_requests_total{route="/a",status="200"} 3.0',
    'vigil_http_requests_total{route="/b",status="500"} 2.0',
    "vigil_http_requests_created 1.7e9",
  ].join("\n");
  expect(sumMetric(text, "vigil_http_requests_total")).toBe(5);
  expect(sumMetric(text, "vigil_missing_total")).toBeNull();
});

test("model metrics shown are quality figures before bookkeeping counts", () => {
  expect(pickMetrics(["count_rows", "recall_at_precision", "average_precision", "count_labelled", "train_seconds"], 3)).toEqual([
    "average_precision",
    "recall_at_precision",
    "train_seconds",
  ]);
});

test("a transaction's path carries its tenant: ids are unique per tenant only", () => {
  expect(transactionPath("acme", "tx 1/2")).toBe("/transactions/tx%201%2F2?tenant_id=acme");
});
