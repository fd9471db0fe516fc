// The frame around every page: navigation filtered by role, who is signed in, and the in-place
// re-authentication dialog when the session expires.
import { useEffect, useRef, type ReactNode } from "react";
import { NavLink } from "react-router-dom";

import { useAuth } from "../auth/AuthContext";
import { LoginForm } from "../pages/Login";

interface NavItem {
  to: string;
  label: string;
  permission: string;
  end?: boolean;
}

export const NAV: NavItem[] = [
  { to: "/", label: "Overview", permission: "stats:read", end: true },
  { to: "/queue", label: "Queue", permission: "cases:read" },
  { to: "/rules", label: "Rules", permission: "rules:read" },
  { to: "/models", label: "Models", permission: "models:read" },
  { to: "/alerts", label: "Alerts & silences", permission: "alerts:read" },
  { to: "/health", label: "System health", permission: "stats:read" },
];

export function Shell({ children }: { children: ReactNode }) {
  const { me, logout, can, state } = useAuth();
  const main = useRef<HTMLElement>(null);

  return (
    <div className="shell">
      <a className="skip-link" href="#main" onClick={() => main.current?.focus()}>
        Skip to content
      </a>
      <aside className="sidebar">
        <div className="brand">
          <span className="logo-dot" aria-hidden="true" /> Vigil
        </div>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((item) => can(item.permission)).map((item) => (
              <li key={item.to}>
                <NavLink to={item.to} end={item.end ?? false}>
                  {item.label}
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="whoami">
          <div className="whoami-name">{me?.principal_id}</div>
          <div className="whoami-roles">
            {me?.roles.join(", ")}
            {me && me.tenants.length ? ` · ${me.tenants.join(", ")}` : me?.roles.includes("admin") ? " · all tenants" : ""}
          </div>
          {me && !can("cases:write") ? <div className="readonly-note">Read-only access</div> : null}
          <button type="button" className="btn btn-ghost btn-small" onClick={logout}>
            Sign out
          </button>
        </div>
      </aside>
      <main id="main" ref={main} tabIndex={-1} className="content">
        {children}
      </main>
      {state === "expired" ? <ReauthDialog user={me?.principal_id ?? ""} /> : null}
    </div>
  );
}

function ReauthDialog({ user }: { user: string }) {
  const dialog = useRef<HTMLDivElement>(null);
  useEffect(() => {
    dialog.current?.querySelector<HTMLInputElement>("input[type=password]")?.focus();
  }, []);
  return (
    <div className="modal-backdrop">
      <div className="modal" role="dialog" aria-modal="true" aria-labelledby="reauth-title" ref={dialog}>
        <LoginForm
          title="Your session expired"
          intro="Sign in again to continue where you were; nothing on this page was lost."
          presetUser={user}
        />
      </div>
    </div>
  );
}
