import { act, screen, waitFor, within } from "@testing-library/react";

import { PERMISSIONS, anomaly, caseSummary, fakeApi, json, location, renderApp } from "./harness";

const summary = (today: number) => ({
  timezone: "Europe/Paris",
  day_start: "2026-11-22T23:00:00Z",
  anomalies_today: today,
  today_by_severity: { critical: 2, warning: today - 2 },
  open_cases: 7,
  last_anomalies: [anomaly(1), anomaly(2, { severity: "warning", score: 60 })],
  high_risk_entities: [
    { tenant_id: "tenant-1", entity_type: "account", entity_id: "acct-9", anomaly_count: 4, max_score: 97, last_event_time: "2026-11-23T09:00:00Z" },
  ],
  generated_at: "2026-11-23T10:00:00Z",
});
const trends = {
  since: "",
  until: "",
  bucket: "hour",
  group_by: "severity",
  timezone: "Europe/Paris",
  points: [
    { bucket_start: "2026-11-23T08:00:00Z", group: "critical", count: 3 },
    { bucket_start: "2026-11-23T09:00:00Z", group: "warning", count: 5 },
  ],
};
const precision = {
  since: "",
  until: "",
  label_source: "analyst",
  detectors: [
    { detector_family: "rules", detector_name: "rule:a", flagged: 10, labelled: 4, fraud: 3, not_fraud: 1, precision: 0.75 },
    { detector_family: "statistical", detector_name: "z", flagged: 10, labelled: 4, fraud: 1, not_fraud: 3, precision: 0.25 },
  ],
};

describe("overview", () => {
  afterEach(() => vi.useRealTimers());

  test("KPIs come from the API: today in the configured zone, open cases, this week's precision from labels", async () => {
    const api = fakeApi({
      "GET /v1/stats/summary": () => summary(12),
      "GET /v1/stats/trends": () => trends,
      "GET /v1/metrics/precision": () => precision,
    });
    await renderApp("/", api);
    await waitFor(() => expect(screen.getByTestId("kpi-today")).toHaveTextContent("Anomalies today (Europe/Paris)12"));
    expect(screen.getByTestId("kpi-open")).toHaveTextContent("7");
    await waitFor(() => expect(screen.getByTestId("kpi-precision")).toHaveTextContent("50.0%"));
    expect(screen.getByTestId("kpi-precision")).toHaveTextContent("4 of 8 labelled detections were fraud");
    expect(screen.getByRole("table", { name: "High-risk entities" })).toHaveTextContent("acct-9");
    expect(screen.getByRole("img", { name: /critical: 3, warning: 5/ })).toBeInTheDocument();
    const week = api.calls.find((c) => c.url.pathname === "/v1/metrics/precision" && c.url.searchParams.get("from"));
    expect(week).toBeDefined();
  });

  test("auto-refresh every 5 s updates figures without blanking the page in between", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    let calls = 0;
    let release: () => void = () => undefined;
    const api = fakeApi({
      "GET /v1/stats/summary": async () => {
        calls += 1;
        if (calls === 1) return summary(12);
        await new Promise<void>((resolve) => (release = resolve));
        return summary(13);
      },
      "GET /v1/stats/trends": () => trends,
      "GET /v1/metrics/precision": () => precision,
    });
    await renderApp("/", api);
    await screen.findByText("12");
    await act(async () => {
      vi.advanceTimersByTime(5000);
    });
    await waitFor(() => expect(calls).toBe(2));
    // The second response is still in flight: the previous figures and rows stay on screen.
    expect(screen.getByTestId("kpi-today")).toHaveTextContent("12");
    expect(within(screen.getByTestId("last-anomalies")).getAllByRole("row")).toHaveLength(2);
    expect(screen.queryByRole("status", { name: /loading/i })).not.toBeInTheDocument();
    await act(async () => release());
    await waitFor(() => expect(screen.getByTestId("kpi-today")).toHaveTextContent("13"));
  });

  test("an API error shows an error state with a retry, not a blank page", async () => {
    const api = fakeApi({
      "GET /v1/stats/summary": () => json(503, { error: { code: "unavailable", message: "database is not answering" } }),
      "GET /v1/stats/trends": () => trends,
      "GET /v1/metrics/precision": () => precision,
    });
    await renderApp("/", api);
    expect((await screen.findAllByText("database is not answering")).length).toBeGreaterThan(0);
    expect(screen.getAllByRole("button", { name: "Try again" }).length).toBeGreaterThan(0);
  });
});

describe("queue", () => {
  test("filters live in the URL and reach the API; the keyboard moves and opens", async () => {
    const api = fakeApi({
      "GET /v1/cases": (_req, url) => ({
        data: url.searchParams.get("cursor") ? [caseSummary(4)] : [caseSummary(1), caseSummary(2), caseSummary(3)],
        next_cursor: url.searchParams.get("cursor") ? null : "abc",
      }),
      "GET /v1/cases/10000000-0000-0000-0000-000000000002": () => json(404, { error: { code: "not_found", message: "gone" } }),
    });
    const user = await renderApp("/queue", api);
    await screen.findByTestId("queue-table");
    await user.click(within(screen.getByRole("group", { name: "Severity" })).getByLabelText("critical"));
    await user.selectOptions(screen.getByLabelText("Sort"), "-max_score");
    await waitFor(() => expect(location()).toBe("/queue?severity=critical&sort=-max_score"));
    const last = api.calls.filter((c) => c.url.pathname === "/v1/cases").at(-1)!;
    expect(last.url.searchParams.get("sort")).toBe("-max_score");
    expect(last.url.searchParams.getAll("severity")).toEqual(["critical"]);

    await user.click(screen.getByRole("button", { name: "Next →" }));
    await waitFor(() => expect(location()).toContain("cursor=abc"));
    expect(await screen.findByText("acct-4", { exact: false })).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "← Previous" }));
    await waitFor(() => expect(location()).not.toContain("cursor"));

    await screen.findByText("acct-2", { exact: false });
    screen.getByTestId("queue-table").focus();
    await user.keyboard("{ArrowDown}");
    expect(screen.getAllByRole("row")[2]).toHaveAttribute("aria-selected", "true");
    await user.keyboard("{Enter}");
    await waitFor(() => expect(location()).toBe("/cases/10000000-0000-0000-0000-000000000002"));
  });

  test("an analyst of several tenants sees each row's tenant and filters by it", async () => {
    const me = (tenants: string[]) => () => ({
      principal_id: "ana-analyst",
      kind: "user",
      roles: ["analyst"],
      tenants,
      permissions: PERMISSIONS.analyst,
    });
    const cases = () => ({ data: [caseSummary(1), { ...caseSummary(2), tenant_id: "tenant-2" }], next_cursor: null });
    const api = fakeApi({ "GET /v1/auth/me": me(["tenant-1", "tenant-2"]), "GET /v1/cases": cases });
    const user = await renderApp("/queue", api);
    const table = await screen.findByTestId("queue-table");
    expect(within(table).getByRole("columnheader", { name: "Tenant" })).toBeInTheDocument();
    expect(within(table).getByRole("cell", { name: "tenant-2" })).toBeInTheDocument();
    await user.selectOptions(screen.getByLabelText("Tenant"), "tenant-2");
    await waitFor(() => expect(location()).toBe("/queue?tenant_id=tenant-2"));
    const last = api.calls.filter((c) => c.url.pathname === "/v1/cases").at(-1)!;
    expect(last.url.searchParams.get("tenant_id")).toBe("tenant-2");
  });

  test("a one-tenant analyst's queue has no tenant column or filter", async () => {
    const api = fakeApi({ "GET /v1/cases": () => ({ data: [caseSummary(1)], next_cursor: null }) });
    await renderApp("/queue", api);
    const table = await screen.findByTestId("queue-table");
    expect(within(table).queryByRole("columnheader", { name: "Tenant" })).toBeNull();
    expect(screen.queryByLabelText("Tenant")).toBeNull();
  });

  test("an empty result says so and offers to clear the filters", async () => {
    const api = fakeApi({ "GET /v1/anomalies": () => ({ data: [], next_cursor: null }) });
    await renderApp("/queue?view=anomalies&q=nothing", api);
    expect(await screen.findByText("No anomalies match")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: /Clear 1 filter/ })).toBeInTheDocument();
  });
});

const kase = {
  ...caseSummary(1),
  anomalies: [anomaly(1), anomaly(1, { anomaly_id: "a2", detector_family: "rules", detector_name: "rule:big", reasons: [{ feature: "rule:big", text: "Rule Big payment matched: amount was 950." }] })],
  notes: [{ note_id: 1, author: "bob", body: "Customer unreachable", created_at: "2026-11-23T10:05:00Z" }],
  label: null,
};

function caseRoutes(onPatch?: (body: unknown) => void) {
  let current = kase as Record<string, unknown>;
  return {
    "GET /v1/cases/10000000-0000-0000-0000-000000000001": () => current,
    "PATCH /v1/cases/10000000-0000-0000-0000-000000000001": async (request: Request) => {
      const body = await request.json();
      onPatch?.(body);
      current = {
        ...kase,
        status: body.status,
        label: { label: "fraud", source: "analyst", author: "ana-analyst", reason: body.note ?? null, labelled_at: new Date().toISOString() },
      };
      return current;
    },
    "GET /v1/transactions/tx-1": () => ({
      transaction_id: "tx-1", occurred_at: "2026-11-23T10:00:00Z", tenant_id: "tenant-1", account_id: "acct-1", card_id: "card-1",
      merchant_id: "m-1", merchant_category: "5411", amount: "950.00", currency: "EUR", channel: "card_present", country: "FR",
      device_id: null, ip: null, lat: null, lon: null, attributes: {}, ingested_at: "2026-11-23T10:00:00Z", anomalies: [], case: null,
    }),
    "GET /v1/anomalies/00000000-0000-0000-0000-000000000001": () => ({ ...anomaly(1), features: { account_amount_zscore: 4.2, account_count_1h: 1 } }),
    "GET /v1/entities/account/acct-1/timeline": () => ({
      entity_type: "account", entity_id: "acct-1", features_at: null, latest_features: null,
      transactions: [
        { transaction_id: "tx-0", occurred_at: "2026-11-22T10:00:00Z", amount: "30.00", currency: "EUR" },
        { transaction_id: "tx-1", occurred_at: "2026-11-23T10:00:00Z", amount: "950.00", currency: "EUR" },
      ],
      anomalies: [anomaly(1)],
    }),
    "GET /v1/anomalies": () => ({ data: [anomaly(3, { transaction_id: "tx-3" })], next_cursor: null }),
    "GET /v1/audit": () => ({ data: [], next_cursor: null }),
  };
}

describe("case detail", () => {
  test("explains every detector's verdict in plain language, with baselines and the entity timeline", async () => {
    await renderApp("/cases/10000000-0000-0000-0000-000000000001", fakeApi(caseRoutes()));
    const verdicts = await screen.findByTestId("detector-verdicts");
    expect(verdicts).toHaveTextContent("Amount is 4.2σ above the account's mean of 35.50.");
    expect(verdicts).toHaveTextContent("(value 4.2, usual 35.5)");
    expect(verdicts).toHaveTextContent("Rule Big payment matched");
    expect(await screen.findByRole("img", { name: "2 transactions over time, 1 flagged as anomalous" })).toBeInTheDocument();
    expect(await screen.findByRole("table", { name: "Feature snapshot with baselines" })).toHaveTextContent("Amount z-score");
    expect(screen.getByText("Customer unreachable")).toBeInTheDocument();
  });

  test("one click records the verdict with the optional note and shows the label", async () => {
    const patches: unknown[] = [];
    const user = await renderApp("/cases/10000000-0000-0000-0000-000000000001", fakeApi(caseRoutes((b) => patches.push(b))));
    await user.type(await screen.findByLabelText(/Note/), "Card reported stolen");
    await user.click(screen.getByRole("button", { name: /Confirmed fraud/ }));
    expect(await screen.findByTestId("case-label")).toHaveTextContent("fraud by ana-analyst");
    expect(patches).toEqual([{ status: "confirmed_fraud", note: "Card reported stolen" }]);
    expect(screen.getByText(/Marked as confirmed fraud/)).toHaveAttribute("role", "status");
  });

  test("viewers read the case but get no verdict buttons", async () => {
    await renderApp("/cases/10000000-0000-0000-0000-000000000001", fakeApi(caseRoutes(), "viewer"));
    await screen.findByTestId("detector-verdicts");
    expect(screen.queryByRole("button", { name: /Confirmed fraud/ })).not.toBeInTheDocument();
    expect(screen.getByText(/can read cases but not record verdicts/)).toBeInTheDocument();
  });
});

describe("rules", () => {
  const detail = {
    rule_id: "big", tenant_id: "tenant-1", name: "Big", current_version: 1, enabled: true,
    created_at: "2026-11-23T10:00:00Z", updated_at: "2026-11-23T10:00:00Z",
    current: { rule_id: "big", version: 1, name: "Big", description: "", expression: "amount > 100", severity: "warning", enabled: true, author: "ana", created_at: "2026-11-23T10:00:00Z" },
    versions: [{ rule_id: "big", version: 1, name: "Big", description: "", expression: "amount > 100", severity: "warning", enabled: true, author: "ana", created_at: "2026-11-23T10:00:00Z" }],
  };

  test("inline validation shows positioned errors and publishing an invalid draft shows the API's message", async () => {
    const api = fakeApi({
      "GET /v1/rules/big": () => detail,
      "POST /v1/rules:validate": async (request) => {
        const { expression } = await request.json();
        return expression.includes("'x'")
          ? { valid: false, errors: [{ message: "cannot compare number with text", line: 1, column: 10, snippet: "amount > 'x'" }] }
          : { valid: true, errors: [] };
      },
      "POST /v1/rules/big/versions": () =>
        json(422, {
          error: {
            code: "invalid_expression",
            message: "the rule expression is invalid",
            details: [{ loc: ["body", "expression"], message: "cannot compare number with text", type: "rule_syntax", line: 1, column: 10 }],
          },
        }),
      "POST /v1/rules:backtest": () => ({
        evaluated: 1000, hits: 12, hits_per_day: { "2026-11-22": 5, "2026-11-23": 7 }, labelled_hits: 4, true_positives: 3,
        precision: 0.75, recall: 0.5, sample_transaction_ids: [],
      }),
    });
    const user = await renderApp("/rules/big", api);
    const editor = await screen.findByLabelText("Expression");
    await waitFor(() => expect(editor).toHaveValue("amount > 100"));
    await user.clear(editor);
    await user.type(editor, "amount > 'x'");
    expect(await screen.findByText(/Line 1, column 10: cannot compare number with text/)).toBeInTheDocument();
    expect(editor).toHaveAttribute("aria-invalid", "true");
    await user.click(screen.getByRole("button", { name: "Publish new version" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("the rule expression is invalid");

    await user.clear(editor);
    await user.type(editor, "amount > 500");
    await screen.findByText("The expression is valid.");
    await user.click(screen.getByRole("button", { name: "Backtest draft" }));
    const result = await screen.findByTestId("backtest-result");
    expect(result).toHaveTextContent("Precision75.0%3 of 4 labelled hits");
    expect(within(result).getByRole("list", { name: "Hits per day" }).children).toHaveLength(2);
  });
});
