// Component-test harness: the real App, router and auth, over a fake `fetch` that answers like the API.
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, useLocation } from "react-router-dom";

import { App } from "../App";
import { AuthProvider } from "../auth/AuthContext";

export type Handler = (request: Request, url: URL) => unknown;

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

export const PERMISSIONS: Record<string, string[]> = {
  viewer: ["anomalies:read", "cases:read", "precision:read", "transactions:read", "stats:read", "rules:read", "models:read", "decisions:read", "alerts:read"],
  analyst: [
    "anomalies:read", "cases:read", "precision:read", "transactions:read", "stats:read", "rules:read", "models:read",
    "decisions:read", "alerts:read", "cases:write", "audit:read", "rules:write", "score", "silences:write",
    "system:read",
  ],
  ingest: ["transactions:write", "score", "decisions:read"],
};

export function fakeApi(routes: Record<string, Handler>, role = "analyst") {
  const calls: { method: string; url: URL; body: string }[] = [];
  const all: Record<string, Handler> = {
    "POST /v1/auth/token": () => ({ access_token: "t0ken", token_type: "bearer", expires_in: 900 }),
    "GET /v1/auth/me": () => ({
      principal_id: `ana-${role}`,
      kind: "user",
      roles: [role],
      tenants: ["tenant-1"],
      permissions: PERMISSIONS[role] ?? [],
    }),
    ...routes,
  };
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : new Request(input, init);
    const url = new URL(request.url);
    const body = request.method === "GET" ? "" : await request.clone().text();
    calls.push({ method: request.method, url, body });
    const handler = all[`${request.method} ${url.pathname}`];
    if (!handler) return json(404, { error: { code: "not_found", message: `no fake for ${request.method} ${url.pathname}` } });
    const out = await handler(request, url);
    return out instanceof Response ? out : json(200, out);
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

function Location() {
  const location = useLocation();
  return <output data-testid="location">{location.pathname + location.search}</output>;
}

export async function renderApp(path: string, api: ReturnType<typeof fakeApi>, { login = true } = {}) {
  const user = userEvent.setup({ advanceTimers: (ms) => (vi.isFakeTimers() ? vi.advanceTimersByTime(ms) : undefined) });
  render(
    <MemoryRouter initialEntries={[path]}>
      <AuthProvider fetch={api.fetch}>
        <App />
        <Location />
      </AuthProvider>
    </MemoryRouter>,
  );
  if (login) {
    await user.type(await screen.findByLabelText("Username"), "ana");
    await user.type(screen.getByLabelText("Password"), "correct-horse-battery");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
  }
  return user;
}

export function location(): string {
  return screen.getByTestId("location").textContent ?? "";
}

export const anomaly = (n: number, extra: Record<string, unknown> = {}) => ({
  anomaly_id: `00000000-0000-0000-0000-00000000000${n}`,
  tenant_id: "tenant-1",
  transaction_id: `tx-${n}`,
  entity_type: "account",
  entity_id: `acct-${n}`,
  event_time: "2026-11-23T10:00:00Z",
  detected_at: "2026-11-23T10:00:01Z",
  detector_family: "statistical",
  detector_name: "amount_zscore",
  detector_version: "1",
  score_raw: 4.2,
  score: 88,
  severity: "critical",
  status: "open",
  amount: "950.00",
  currency: "EUR",
  reasons: [{ feature: "account_amount_zscore", value: 4.2, baseline: 35.5, contribution: 1, text: "Amount is 4.2σ above the account's mean of 35.50." }],
  ...extra,
});

export const caseSummary = (n: number, extra: Record<string, unknown> = {}) => ({
  case_id: `10000000-0000-0000-0000-00000000000${n}`,
  tenant_id: "tenant-1",
  transaction_id: `tx-${n}`,
  entity_type: "account",
  entity_id: `acct-${n}`,
  event_time: "2026-11-23T10:00:00Z",
  status: "open",
  assignee: null,
  max_severity: "critical",
  max_score: 90 - n,
  anomaly_count: 2,
  opened_at: "2026-11-23T10:00:02Z",
  updated_at: "2026-11-23T10:00:02Z",
  ...extra,
});
