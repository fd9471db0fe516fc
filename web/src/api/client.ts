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
  fetch?: typeof globalThis.fetch;
  baseUrl?: string;
}

export function makeClient({ getToken, onUnauthorized, fetch, baseUrl }: ClientOptions): Api {
  const client = createClient<paths>({
    baseUrl: baseUrl ?? window.location.origin,
    ...(fetch ? { fetch } : {}),
  });
  client.use({
    onRequest({ request }) {
      const token = getToken();
      if (token && !request.headers.has("Authorization")) {
        request.headers.set("Authorization", `Bearer ${token}`);
      }
      return request;
    },
    onResponse({ response, request }) {
      // A rejected token means the session is over; the token endpoint's own 401 is a wrong password.
      if (response.status === 401 && !request.url.includes("/v1/auth/token")) {
        onUnauthorized();
      }
      return response;
    },
  });
  return client;
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
