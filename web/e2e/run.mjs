// End-to-end run of the built dashboard against the live pipeline, in Debian's Chromium.
// Env: VIGIL_E2E_URL (API + dashboard), VIGIL_E2E_PASSWORD (of the e2e-* users),
// VIGIL_E2E_SCREENSHOTS (folder). Prints one JSON line of what it changed, for the pytest side.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const base = process.env.VIGIL_E2E_URL ?? "http://127.0.0.1:8000";
const password = process.env.VIGIL_E2E_PASSWORD ?? "";
const shots = process.env.VIGIL_E2E_SCREENSHOTS ?? "../artifacts/screenshots";
const modelName = process.env.VIGIL_E2E_MODEL ?? "";
const chromiumPath = process.env.VIGIL_CHROMIUM ?? "/usr/bin/chromium";
const TIMEOUT = 30_000;

function check(condition, message) {
  if (!condition) throw new Error(`e2e: ${message}`);
}

function step(name) {
  process.stderr.write(`e2e: ${name}\n`);
}

async function shot(page, name, fullPage = false) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

async function login(page, username) {
  await page.locator("#login-username").fill(username);
  await page.locator("#login-password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function nav(page, name) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true }).click();
}

async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#login-username").waitFor();
}

async function apiToken(request, username) {
  const response = await request.post(`${base}/v1/auth/token`, {
    form: { grant_type: "password", username, password },
  });
  check(response.ok(), `token for ${username}: ${response.status()}`);
  return (await response.json()).access_token;
}

const userDataDir = mkdtempSync(join(tmpdir(), "vigil-e2e-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: chromiumPath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1440, height: 900 },
});
context.setDefaultTimeout(TIMEOUT);
const page = context.pages()[0] ?? (await context.newPage());
const consoleErrors = [];
page.on("pageerror", (error) => consoleErrors.push(String(error)));
const result = {};

try {
  step("ingest accounts cannot sign in");
  await page.goto(base);
  // The app first tries to restore a session ("Restoring your session…"): shoot the form, not that.
  await page.locator("#login-username").waitFor();
  await shot(page, "00-login");
  await login(page, "e2e-ingest");
  await page.getByText("cannot sign in to the dashboard").waitFor();

  step("overview shows live anomalies");
  await page.locator("#login-password").fill(password);
  await page.locator("#login-username").fill("e2e-analyst");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.locator("[data-testid=last-anomalies] tr").first().waitFor();
  const today = Number((await page.locator("[data-testid=kpi-today] .kpi-value").innerText()).replace(/\D/g, ""));
  check(today > 0, `anomalies today should be > 0, got ${today}`);
  // Auto-refresh: a new summary arrives within the 5 s period, and the table stays on screen meanwhile.
  await page.waitForResponse((r) => r.url().includes("/v1/stats/summary") && r.ok(), { timeout: 8000 });
  check(await page.locator("[data-testid=last-anomalies] tr").count() > 0, "rows vanished during a refresh");
  await page.locator(".chart svg rect").first().waitFor();
  await shot(page, "01-overview");

  step("queue: sort by score, keyboard to the top case");
  await nav(page, "Queue");
  await page.locator("[data-testid=queue-table] tbody tr").first().waitFor();
  await page.getByLabel("Sort").selectOption("-max_score");
  await page.waitForURL(/sort=-max_score/);
  await page.getByRole("group", { name: "Severity" }).getByText("critical").click();
  await page.waitForURL(/severity=critical/);
  await page.locator("[data-testid=queue-table] tbody tr").first().waitFor();
  await shot(page, "02-queue");
  const table = page.locator("[data-testid=queue-table]");
  await table.focus();
  await page.keyboard.press("j");
  await page.keyboard.press("k");
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/cases\//);
  result.case_id = page.url().split("/cases/")[1];

  step("case detail explains the anomaly");
  await page.locator("[data-testid=detector-verdicts] li.verdict").first().waitFor();
  await page.locator(".timeline-line").waitFor();
  await page.getByRole("table", { name: "Feature snapshot with baselines" }).waitFor().catch(() => undefined);
  await shot(page, "03-case", true);

  step("one-click verdict becomes a label");
  await page.getByRole("button", { name: /Confirmed fraud/ }).click();
  await page.locator("[data-testid=case-label]").filter({ hasText: "fraud" }).waitFor();
  await page.locator("[data-testid=case-audit] li").first().waitFor();
  await shot(page, "04-case-confirmed", true);
  const token = await apiToken(context.request, "e2e-analyst");
  const kase = await (
    await context.request.get(`${base}/v1/cases/${result.case_id}`, { headers: { Authorization: `Bearer ${token}` } })
  ).json();
  check(kase.status === "confirmed_fraud" && kase.label?.label === "fraud", `API shows ${JSON.stringify(kase.label)}`);
  result.transaction_id = kase.transaction_id;

  step("the overview's precision now counts the label");
  await nav(page, "Overview");
  await page.locator("[data-testid=kpi-precision]").filter({ hasText: /of \d+ labelled detections were fraud/ }).waitFor();
  await shot(page, "04b-overview-after-verdict");

  step("create a silence");
  await nav(page, "Alerts & silences");
  result.silence = `e2e maintenance window ${Date.now()}`;
  const form = page.getByRole("form", { name: "Create a silence" });
  await form.getByLabel("Value").fill("info");
  await form.getByLabel("Comment").fill(result.silence);
  await form.getByRole("button", { name: "Create silence" }).click();
  await page.locator("[data-testid=silences]").getByText(result.silence).waitFor();
  await shot(page, "05-alerts");

  step("write a rule, then edit it with an error and see the message");
  await nav(page, "Rules");
  await page.getByRole("link", { name: "New rule" }).click();
  result.rule_id = `e2e-large-${Date.now()}`;
  await page.getByLabel(/Rule id/).fill(result.rule_id);
  await page.getByLabel("Name", { exact: true }).fill("Large card payment");
  await page.getByLabel("Description").fill("Written by the e2e run");
  await page.locator("#rule-expression").fill("amount > 800");
  await page.getByText("The expression is valid.").waitFor();
  await page.getByRole("button", { name: /Create rule/ }).click();
  await page.waitForURL(new RegExp(`/rules/${result.rule_id}$`));
  await page.getByText("v1 (current)").waitFor();
  const editor = page.locator("#rule-expression");
  await editor.waitFor();
  await editor.fill("amount > 1000 and country == ");
  const issues = page.locator("[data-testid=rule-issues] .form-error").first();
  await issues.waitFor();
  check(/Line \d+, column \d+/.test(await issues.innerText()), "inline error names the position");
  await page.getByRole("button", { name: "Publish new version" }).click();
  await page.getByRole("alert").filter({ hasText: /invalid/i }).waitFor();
  await shot(page, "06-rules-error");

  step("backtest a valid draft");
  await editor.fill("amount > 500");
  await page.getByText("The expression is valid.").waitFor();
  await page.getByLabel("over the last").selectOption("7");
  await page.getByRole("button", { name: "Backtest draft" }).click();
  await page.locator("[data-testid=backtest-result]").waitFor({ timeout: 60_000 });
  await shot(page, "07-rule-backtest");

  step("health: services, consumer lag and dead letters from the live pipeline");
  await nav(page, "System health");
  await page.locator("[data-testid=health-ready] .kpi-value").filter({ hasText: "Ready" }).waitFor();
  // The malformed messages the test sent were dead-lettered by ingestion.
  await page.locator("[data-testid=health-dlq] .kpi-value").filter({ hasText: /^[1-9][\d,]*$/ }).waitFor({ timeout: 60_000 });
  await page.locator("[data-testid=health-lag] .kpi-value").filter({ hasText: /^[\d,]+$/ }).waitFor();
  await page.locator("[data-testid=service-ingest]").filter({ hasText: "Ready" }).waitFor({ timeout: 30_000 });
  // Throughput needs two samples: the page refreshes every 5 s.
  await page.locator("[data-testid=health-throughput] .kpi-value").filter({ hasText: "tx/s" }).waitFor({ timeout: 30_000 });
  const figure = async (id) => Number((await page.locator(`[data-testid=${id}] .kpi-value`).innerText()).replace(/,/g, ""));
  result.health = { dlq: await figure("health-dlq"), lag: await figure("health-lag") };
  await shot(page, "09-health");

  step("models, as an admin");
  await signOut(page);
  await login(page, "e2e-admin");
  await nav(page, "Models");
  await page.getByRole("heading", { name: "Models" }).waitFor();
  await page.locator(".state-loading").waitFor({ state: "detached", timeout: 90_000 });
  if (modelName) {
    // The model trained on this run's history: promote its challenger to champion.
    const card = page.locator("section.card").filter({ has: page.getByRole("heading", { name: modelName }) });
    await card.getByRole("button", { name: "Promote to champion" }).first().click();
    await page.getByText(new RegExp(`${modelName}@champion now serves version`)).waitFor({ timeout: 60_000 });
    await card.getByText("★ champion").waitFor();
  }
  await shot(page, "08-models");

  step("viewers read but cannot decide; a deep link survives sign-in");
  await signOut(page);
  await page.goto(`${base}/cases/${result.case_id}`);
  await login(page, "e2e-viewer");
  await page.locator("[data-testid=detector-verdicts]").waitFor();
  check(page.url().endsWith(`/cases/${result.case_id}`), "deep link kept through sign-in");
  check((await page.getByRole("button", { name: /Confirmed fraud/ }).count()) === 0, "viewer sees no verdict buttons");
  await page.getByText("can read cases but not record verdicts").waitFor();
  check((await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Rules" }).count()) === 1, "viewer still sees rules (read-only)");
  await shot(page, "10-viewer-case");

  step("a laptop screen still fits the queue without horizontal scrolling");
  await page.setViewportSize({ width: 1280, height: 720 });
  await nav(page, "Queue");
  await page.locator("[data-testid=queue-table] tbody tr").first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `page overflows a 1280 px screen by ${overflow}px`);
  await shot(page, "11-laptop-queue");

  check(consoleErrors.length === 0, `page errors: ${consoleErrors.join("; ")}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (error) {
  await shot(page, "zz-failure", true).catch(() => undefined);
  throw error;
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
