// The typed API client: openapi-fetch over the generated `paths`, plus Vigil's error shape.
import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Api = Client<paths>;

export type AnomalySummary = Schemas["AnomalySummary"];
export type AnomalyDetail = Schemas["AnomalyDetail"];
export type CaseSummary = Schemas["CaseSummary"];
export type CaseDetail = Schemas["CaseDetail"];
export type CaseStatus = Schemas["CaseStatus"];
export type Severity = Schemas["Severity"];
export type Reason = Schemas["Reason"];
export type Me = Schemas["Me"];

/** A failed call, carrying the API's `{"error": {code, message, details}}` body. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Schemas["ErrorDetail"][];

  constructor(status: number, code: string, message: string, details: Schemas["ErrorDetail"][] = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function toApiError(status: number, body: unknown): ApiError {
  const error = (body as { error?: Schemas["ErrorInfo"] } | undefined)?.error;
  if (error && typeof error.message === "string") {
    return new ApiError(status, error.code, error.message, error.details ?? []);
  }
  return new ApiError(status, "http_error", `The server answered ${status}.`);
}

interface ClientOptions {
  getToken: () => string | null;
  onUnauthorized: () => void;
  /** Renews the access token from the refresh cookie; resolves null when the session is over. */
  refresh?: () => Promise<string | null>;
  fetch?: typeof globalThis.fetch;
  baseUrl?: string;
}

// Endpoints whose 401 is an answer (wrong password, no session), never a reason to refresh.
const AUTH_ANSWERS = ["/v1/auth/token", "/v1/auth/refresh", "/v1/auth/logout"];

export function makeClient({ getToken, onUnauthorized, refresh, fetch, baseUrl }: ClientOptions): Api {
  const send = fetch ?? ((input: Request) => globalThis.fetch(input));

  // A rejected access token is renewed once from the httpOnly refresh cookie and the request
  // retried with the new token; only when that fails is the session over.
  async function authorisedFetch(input: Request): Promise<Response> {
    const explicit = input.headers.has("Authorization");
    const token = getToken();
    const retry = input.clone();
    if (token && !explicit) input.headers.set("Authorization", `Bearer ${token}`);
    const response = await send(input);
    if (response.status !== 401 || AUTH_ANSWERS.some((path) => input.url.includes(path)) || explicit) {
      return response;
    }
    const renewed = refresh ? await refresh() : null;
    if (renewed === null) {
      onUnauthorized();
      return response;
    }
    retry.headers.set("Authorization", `Bearer ${renewed}`);
    const second = await send(retry);
    if (second.status === 401) onUnauthorized();
    return second;
  }

  return createClient<paths>({ baseUrl: baseUrl ?? window.location.origin, fetch: authorisedFetch });
}

type Outcome<T> = Promise<{ data?: T; error?: unknown; response: Response }>;

/** The data of a call, or an `ApiError` with the server's message. */
export async function unwrap<T>(call: Outcome<T>): Promise<T> {
  let outcome: Awaited<Outcome<T>>;
  try {
    outcome = await call;
  } catch (exc) {
    if (exc instanceof DOMException && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network", "The API cannot be reached. Check your connection; retrying shortly.");
  }
  const { data, error, response } = outcome;
  if (!response.ok || error !== undefined) {
    throw toApiError(response.status, error);
  }
  return data as T;
}
