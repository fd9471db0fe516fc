import { useState, type FormEvent } from "react";

import { useAuth } from "../auth/AuthContext";

export function LoginForm({ title, intro, presetUser }: { title: string; intro?: string; presetUser?: string }) {
  const { login } = useAuth();
  const [username, setUsername] = useState(presetUser ?? "");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username.trim(), password);
    } catch (exc) {
      setError(exc instanceof Error ? exc.message : String(exc));
      setPassword("");
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="login-form" onSubmit={submit} aria-describedby={error ? "login-error" : undefined}>
      <h1>{title}</h1>
      {intro ? <p className="muted">{intro}</p> : null}
      <label htmlFor="login-username">Username</label>
      <input
        id="login-username"
        name="username"
        autoComplete="username"
        required
        autoFocus={!presetUser}
        value={username}
        onChange={(e) => setUsername(e.target.value)}
      />
      <label htmlFor="login-password">Password</label>
      <input
        id="login-password"
        name="password"
        type="password"
        autoComplete="current-password"
        required
        autoFocus={Boolean(presetUser)}
        value={password}
        onChange={(e) => setPassword(e.target.value)}
      />
      {error ? (
        <p id="login-error" className="form-error" role="alert">
          {error}
        </p>
      ) : null}
      <button type="submit" className="btn btn-primary" disabled={busy}>
        {busy ? "Signing in…" : "Sign in"}
      </button>
    </form>
  );
}

export function LoginPage() {
  return (
    <main className="login-page">
      <div className="login-brand" aria-hidden="true">
        <span className="logo-dot" /> Vigil
      </div>
      <LoginForm title="Sign in to Vigil" intro="Fraud operations for analysts. Use your Vigil account." />
    </main>
  );
}
