import { screen, waitFor } from "@testing-library/react";

import { fakeApi, json, location, renderApp } from "./harness";

const summary = {
  timezone: "Europe/Paris",
  day_start: "2026-11-22T23:00:00Z",
  anomalies_today: 0,
  today_by_severity: {},
  open_cases: 0,
  last_anomalies: [],
  high_risk_entities: [],
  generated_at: "2026-11-23T10:00:00Z",
};
const quiet = {
  "GET /v1/stats/summary": () => summary,
  "GET /v1/stats/trends": () => ({ since: "", until: "", bucket: "hour", group_by: "severity", timezone: "UTC", points: [] }),
  "GET /v1/metrics/precision": () => ({ since: "", until: "", label_source: "analyst", detectors: [] }),
};

test("a wrong password shows the API's message and keeps the user on the form", async () => {
  const api = fakeApi({
    "POST /v1/auth/token": () => json(401, { error: { code: "invalid_grant", message: "unknown user or wrong password" } }),
  });
  await renderApp("/", api);
  expect(await screen.findByRole("alert")).toHaveTextContent("unknown user or wrong password");
  expect(screen.getByLabelText("Password")).toHaveValue("");
});

test("ingest accounts cannot sign in to the dashboard", async () => {
  await renderApp("/", fakeApi({}, "ingest"));
  expect(await screen.findByRole("alert")).toHaveTextContent("cannot sign in to the dashboard");
  expect(screen.queryByRole("navigation", { name: "Main" })).not.toBeInTheDocument();
});

test("signing in lands on the requested deep link with its filters, token sent as a bearer header", async () => {
  const api = fakeApi({ ...quiet, "GET /v1/cases": () => ({ data: [], next_cursor: null }) });
  await renderApp("/queue?status=open&severity=critical", api);
  expect(await screen.findByText("No cases match")).toBeInTheDocument();
  expect(location()).toBe("/queue?status=open&severity=critical");
  const call = api.calls.find((c) => c.url.pathname === "/v1/cases")!;
  expect(call.url.searchParams.getAll("status")).toEqual(["open"]);
  expect(call.url.searchParams.getAll("severity")).toEqual(["critical"]);
  // The token never lands in storage an injected script could read.
  expect(JSON.stringify({ ...window.localStorage, ...window.sessionStorage })).not.toContain("t0ken");
});

test("navigation follows the role: viewers see no write-only entries and are told they are read-only", async () => {
  await renderApp("/", fakeApi(quiet, "viewer"));
  const nav = await screen.findByRole("navigation", { name: "Main" });
  expect(nav).toHaveTextContent("Queue");
  expect(screen.getByText("Read-only access")).toBeInTheDocument();
});

test("a rejected token opens the re-authentication dialog without leaving the page", async () => {
  let expired = false;
  const api = fakeApi({
    ...quiet,
    "GET /v1/stats/summary": () => (expired ? json(401, { error: { code: "invalid_token", message: "expired" } }) : summary),
    "GET /v1/rules": () => {
      expired = true;
      return json(401, { error: { code: "invalid_token", message: "token expired" } });
    },
  });
  const user = await renderApp("/", api);
  await screen.findByRole("heading", { name: "Overview" });
  await user.click(screen.getByRole("link", { name: "Rules" }));
  const dialog = await screen.findByRole("dialog");
  expect(dialog).toHaveTextContent("Your session expired");
  expect(location()).toBe("/rules");
  await waitFor(() => expect(screen.getByLabelText("Password")).toHaveFocus());
});
