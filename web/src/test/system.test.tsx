import { screen, waitFor, within } from "@testing-library/react";

import { fakeApi, json, renderApp } from "./harness";

const quiet = {
  "GET /v1/stats/summary": () => ({
    timezone: "UTC",
    day_start: "2026-11-23T00:00:00Z",
    anomalies_today: 0,
    today_by_severity: {},
    open_cases: 0,
    last_anomalies: [],
    high_risk_entities: [],
    generated_at: "2026-11-23T10:00:00Z",
  }),
  "GET /v1/stats/trends": () => ({ since: "", until: "", bucket: "hour", group_by: "severity", timezone: "UTC", points: [] }),
  "GET /v1/metrics/precision": () => ({ since: "", until: "", label_source: "analyst", detectors: [] }),
  "GET /readyz": () => ({ ready: true, checks: { database: true, kafka: true } }),
  "GET /metrics": () => new Response("vigil_http_requests_total{a=\"b\"} 12\n", { status: 200 }),
};

const status = {
  generated_at: "2026-11-23T10:00:00Z",
  kafka_reachable: true,
  services: [
    {
      name: "features",
      status: "unknown",
      checks: {},
      consumer: { group: "vigil-features", topics: ["tx.valid"], state: "empty", members: 0, lag: 40, partitions: 6 },
    },
    {
      name: "detect-ml",
      status: "not_ready",
      checks: { database: true, "model:vigil-supervised": false },
      consumer: { group: "vigil-detect-ml", topics: ["tx.features"], state: "stable", members: 1, lag: 1200, partitions: 6 },
    },
    { name: "api", status: "ready", checks: {}, consumer: null },
  ],
  dlq: { topic: "tx.dlq", depth: 3 },
  throughput: { transactions_per_second: 48.5, anomalies_last_minute: 12 },
  degraded_detectors: ["vigil-supervised"],
};

describe("system health", () => {
  test("shows services, consumer lag, dead letters, throughput and degraded detectors from the status endpoint", async () => {
    const api = fakeApi({ ...quiet, "GET /v1/system/status": () => status });
    await renderApp("/health", api);
    await waitFor(() => expect(screen.getByTestId("health-lag")).toHaveTextContent("1,240"));
    expect(screen.getByTestId("health-dlq")).toHaveTextContent("3");
    expect(screen.getByTestId("health-dlq")).toHaveTextContent("retained in tx.dlq");
    expect(screen.getByTestId("health-throughput")).toHaveTextContent("48.5 tx/s");
    expect(screen.getByTestId("health-throughput")).toHaveTextContent("12 anomalies in the last minute");
    expect(screen.getByTestId("health-degraded")).toHaveTextContent("1vigil-supervised");
    const table = screen.getByRole("table", { name: "Stream services" });
    const ml = within(table).getByTestId("service-detect-ml");
    expect(ml).toHaveTextContent("Not ready");
    expect(ml).toHaveTextContent("model:vigil-supervised");
    expect(within(ml).getByTestId("lag-detect-ml")).toHaveTextContent("1,200");
    expect(within(table).getByTestId("service-features")).toHaveTextContent("Unknown");
  });

  test("Kafka unreachable is said plainly, not shown as zero lag", async () => {
    const down = {
      ...status,
      kafka_reachable: false,
      dlq: { topic: "tx.dlq", depth: null },
      services: [
        {
          name: "detect-rules",
          status: "unknown",
          checks: {},
          consumer: { group: "g", topics: ["t"], state: "unknown", members: null, lag: null, partitions: 0 },
        },
      ],
    };
    await renderApp("/health", fakeApi({ ...quiet, "GET /v1/system/status": () => down }));
    expect(await screen.findByText(/Kafka cannot be reached/)).toBeInTheDocument();
    expect(screen.getByTestId("lag-detect-rules")).toHaveTextContent("—");
    expect(screen.getByTestId("health-dlq")).toHaveTextContent("—");
  });
});

describe("overview degraded detectors", () => {
  test("the KPI counts the degraded detectors the status endpoint reports", async () => {
    await renderApp("/", fakeApi({ ...quiet, "GET /v1/system/status": () => status }));
    await waitFor(() => expect(screen.getByTestId("kpi-degraded")).toHaveTextContent("Degraded detectors1"));
    expect(screen.getByTestId("kpi-degraded")).toHaveTextContent("vigil-supervised");
  });

  test("viewers, who may not read system status, see n/a and no request is made", async () => {
    const api = fakeApi({ ...quiet, "GET /v1/system/status": () => json(403, { error: { code: "forbidden", message: "no" } }) }, "viewer");
    await renderApp("/", api);
    await waitFor(() => expect(screen.getByTestId("kpi-degraded")).toHaveTextContent("n/a"));
    expect(api.calls.some((c) => c.url.pathname === "/v1/system/status")).toBe(false);
  });
});

describe("silent token refresh", () => {
  test("a 401 is answered by one refresh from the cookie and the request retried with the new token", async () => {
    let refreshed = 0;
    const api = fakeApi({
      ...quiet,
      "POST /v1/auth/refresh": () => {
        refreshed += 1;
        // The first call is the start-up restore, before any login: no cookie yet.
        if (refreshed === 1) return json(401, { error: { code: "invalid_refresh_token", message: "no refresh token" } });
        return { access_token: "n3w-token", token_type: "bearer", expires_in: 900 };
      },
      "GET /v1/system/status": (request) =>
        request.headers.get("Authorization") === "Bearer n3w-token"
          ? status
          : json(401, { error: { code: "invalid_token", message: "token expired" } }),
    });
    await renderApp("/health", api);
    await waitFor(() => expect(screen.getByTestId("health-dlq")).toHaveTextContent("3"));
    expect(screen.queryByRole("dialog")).not.toBeInTheDocument();
    const statusCalls = api.calls.filter((c) => c.url.pathname === "/v1/system/status");
    expect(statusCalls.length).toBeGreaterThanOrEqual(2);
    // The start-up restore, then exactly one renewal for the rejected token: later calls use the new one.
    expect(refreshed).toBe(2);
  });

  test("a reload restores the session from the refresh cookie without the login form", async () => {
    const api = fakeApi({
      ...quiet,
      "POST /v1/auth/refresh": () => ({ access_token: "r3stored", token_type: "bearer", expires_in: 900 }),
    });
    await renderApp("/", api, { login: false });
    expect(await screen.findByRole("heading", { name: "Overview" })).toBeInTheDocument();
    expect(screen.queryByLabelText("Password")).not.toBeInTheDocument();
    const me = api.calls.find((c) => c.url.pathname === "/v1/auth/me");
    expect(me).toBeDefined();
  });

  test("when the refresh is refused the session expires and the password is asked in place", async () => {
    let expired = false;
    const api = fakeApi({
      ...quiet,
      "POST /v1/auth/refresh": () => json(401, { error: { code: "invalid_refresh_token", message: "reused" } }),
      "GET /v1/rules": () => {
        expired = true;
        return json(401, { error: { code: "invalid_token", message: "token expired" } });
      },
      "GET /v1/stats/summary": () =>
        expired ? json(401, { error: { code: "invalid_token", message: "expired" } }) : quiet["GET /v1/stats/summary"](),
    });
    const user = await renderApp("/", api);
    await screen.findByRole("heading", { name: "Overview" });
    await user.click(screen.getByRole("link", { name: "Rules" }));
    expect(await screen.findByRole("dialog")).toHaveTextContent("Your session expired");
    expect(api.calls.filter((c) => c.url.pathname === "/v1/auth/refresh").length).toBeGreaterThanOrEqual(2);
  });

  test("signing out ends the server-side session", async () => {
    const api = fakeApi({ ...quiet, "POST /v1/auth/logout": () => new Response(null, { status: 204 }) });
    const user = await renderApp("/", api);
    await screen.findByRole("heading", { name: "Overview" });
    await user.click(screen.getByRole("button", { name: /sign out/i }));
    expect(await screen.findByLabelText("Username")).toBeInTheDocument();
    await waitFor(() => expect(api.calls.some((c) => c.method === "POST" && c.url.pathname === "/v1/auth/logout")).toBe(true));
  });
});
