// Session state: the access token lives only in memory (never in storage an injected script could read).
// The API has no refresh endpoint yet, so an expiring session asks for the password again in place,
// keeping the page and its filters, instead of silently logging out.
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";

import { ApiError, makeClient, unwrap, type Api, type Me } from "../api/client";

export type SessionState = "anonymous" | "active" | "expired";

interface AuthValue {
  api: Api;
  me: Me | null;
  state: SessionState;
  expiresAt: number | null;
  login: (username: string, password: string) => Promise<void>;
  logout: () => void;
  can: (permission: string) => boolean;
}

const AuthContext = createContext<AuthValue | null>(null);
const DASHBOARD_ROLES = ["admin", "analyst", "viewer"];

export function AuthProvider({ children, fetch }: { children: ReactNode; fetch?: typeof globalThis.fetch }) {
  const token = useRef<string | null>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [state, setState] = useState<SessionState>("anonymous");
  const [expiresAt, setExpiresAt] = useState<number | null>(null);

  const expire = useCallback(() => {
    token.current = null;
    setState((current) => (current === "active" ? "expired" : current));
  }, []);

  const api = useMemo(
    () => makeClient({ getToken: () => token.current, onUnauthorized: expire, ...(fetch ? { fetch } : {}) }),
    [expire, fetch],
  );

  useEffect(() => {
    if (state !== "active" || expiresAt === null) return undefined;
    const timer = window.setTimeout(expire, Math.max(0, expiresAt - Date.now()));
    return () => window.clearTimeout(timer);
  }, [state, expiresAt, expire]);

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
      // Renew a little early so a request never races the expiry.
      setExpiresAt(Date.now() + Math.max(30, issued.expires_in - 15) * 1000);
      setMe(who);
      setState("active");
    },
    [api, me],
  );

  const logout = useCallback(() => {
    token.current = null;
    setMe(null);
    setExpiresAt(null);
    setState("anonymous");
  }, []);

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
