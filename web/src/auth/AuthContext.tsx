// Session state: the access token lives only in memory (never in storage an injected script could read);
// the refresh token is an httpOnly cookie scoped to /v1/auth that scripts cannot read at all.
// Before the access token expires (and on any 401) it is renewed silently from that cookie; a reload
// restores the session the same way. Only when renewal fails does the page ask for the password
// again in place, keeping the page and its filters.
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";

import { ApiError, makeClient, unwrap, type Api, type Me } from "../api/client";

export type SessionState = "restoring" | "anonymous" | "active" | "expired";

interface AuthValue {
  api: Api;
  me: Me | null;
  state: SessionState;
  expiresAt: number | null;
  login: (username: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
  can: (permission: string) => boolean;
}

const AuthContext = createContext<AuthValue | null>(null);
const DASHBOARD_ROLES = ["admin", "analyst", "viewer"];

export function AuthProvider({ children, fetch }: { children: ReactNode; fetch?: typeof globalThis.fetch }) {
  const token = useRef<string | null>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [state, setState] = useState<SessionState>("restoring");
  const [expiresAt, setExpiresAt] = useState<number | null>(null);
  const renewing = useRef<Promise<string | null> | null>(null);

  const expire = useCallback(() => {
    token.current = null;
    setState((current) => (current === "active" ? "expired" : current));
  }, []);

  const send = useMemo(() => fetch ?? ((input: Request) => globalThis.fetch(input)), [fetch]);

  // One renewal at a time: concurrent 401s share it (each refresh token works once).
  const refresh = useCallback((): Promise<string | null> => {
    if (renewing.current) return renewing.current;
    const attempt = (async () => {
      try {
        const response = await send(
          new Request(new URL("/v1/auth/refresh", window.location.origin), { method: "POST", credentials: "same-origin" }),
        );
        if (!response.ok) return null;
        const issued = (await response.json()) as { access_token: string; expires_in: number };
        token.current = issued.access_token;
        setExpiresAt(Date.now() + Math.max(30, issued.expires_in - 60) * 1000);
        return issued.access_token;
      } catch {
        return null;
      } finally {
        renewing.current = null;
      }
    })();
    renewing.current = attempt;
    return attempt;
  }, [send]);

  const api = useMemo(
    () => makeClient({ getToken: () => token.current, onUnauthorized: expire, refresh, ...(fetch ? { fetch } : {}) }),
    [expire, refresh, fetch],
  );

  // A reload keeps the session: the cookie survives it, the in-memory token does not.
  useEffect(() => {
    let cancelled = false;
    void (async () => {
      const renewed = await refresh();
      if (renewed !== null) {
        try {
          const who = await unwrap(api.GET("/v1/auth/me"));
          if (!cancelled && who.kind !== "client" && who.roles.some((role) => DASHBOARD_ROLES.includes(role))) {
            setMe(who);
            setState("active");
            return;
          }
        } catch {
          // fall through to the login form
        }
      }
      if (!cancelled) setState((current) => (current === "restoring" ? "anonymous" : current));
    })();
    return () => {
      cancelled = true;
    };
    // Once, at start.
  }, []);

  // Renew a minute before expiry; if that fails the session is over and the dialog asks again.
  useEffect(() => {
    if (state !== "active" || expiresAt === null) return undefined;
    const timer = window.setTimeout(
      () => {
        void refresh().then((renewed) => {
          if (renewed === null) expire();
        });
      },
      Math.max(0, expiresAt - Date.now()),
    );
    return () => window.clearTimeout(timer);
  }, [state, expiresAt, expire, refresh]);

  const login = useCallback(
    async (username: string, password: string) => {
      const issued = await unwrap(
        api.POST("/v1/auth/token", {
          body: { grant_type: "password", username, password },
          bodySerializer: (body) => new URLSearchParams(body as Record<string, string>).toString(),
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
        }),
      );
      const who = await unwrap(
        api.GET("/v1/auth/me", { headers: { Authorization: `Bearer ${issued.access_token}` } }),
      );
      if (who.kind === "client" || !who.roles.some((role) => DASHBOARD_ROLES.includes(role))) {
        throw new ApiError(403, "not_a_dashboard_user", "This account is for API ingestion and cannot sign in to the dashboard.");
      }
      if (me !== null && who.principal_id !== me.principal_id) {
        // Someone else signing in on an expired screen must not inherit the previous page state.
        window.location.assign("/");
      }
      token.current = issued.access_token;
      // Renew a minute early so a request never races the expiry.
      setExpiresAt(Date.now() + Math.max(30, issued.expires_in - 60) * 1000);
      setMe(who);
      setState("active");
    },
    [api, me],
  );

  const logout = useCallback(async () => {
    // End the refresh family server-side (and clear the cookie) before showing the login form, so a
    // reload right after signing out cannot restore the session. A failure still signs out locally.
    await api.POST("/v1/auth/logout").catch(() => undefined);
    token.current = null;
    setMe(null);
    setExpiresAt(null);
    setState("anonymous");
  }, [api]);

  const can = useCallback((permission: string) => me?.permissions.includes(permission) ?? false, [me]);

  const value = useMemo(
    () => ({ api, me, state, expiresAt, login, logout, can }),
    [api, me, state, expiresAt, login, logout, can],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthValue {
  const value = useContext(AuthContext);
  if (value === null) throw new Error("useAuth outside <AuthProvider>");
  return value;
}

export function useApiClient(): Api {
  return useAuth().api;
}
