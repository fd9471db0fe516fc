// Data loading with stale-while-refresh: a refresh never blanks what is on screen (no flicker),
// errors keep the last good data visible next to the message.
import { useCallback, useEffect, useRef, useState, type DependencyList } from "react";

import { useAuth } from "../auth/AuthContext";

export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  refreshedAt: number | null;
  reload: () => void;
}

export function useApi<T>(load: (signal: AbortSignal) => Promise<T>, deps: DependencyList, refreshMs?: number): Loaded<T> {
  const { state } = useAuth();
  const key = JSON.stringify(deps);
  const [loaded, setLoaded] = useState<{ key: string; value: T } | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [refreshedAt, setRefreshedAt] = useState<number | null>(null);
  const [tick, setTick] = useState(0);
  const loader = useRef(load);
  loader.current = load;

  // New inputs mean new data: clear the error so the page shows loading, not the previous selection.
  useEffect(() => {
    setError(undefined);
    setLoading(true);
  }, [key]);

  useEffect(() => {
    if (state !== "active") return undefined;
    const controller = new AbortController();
    loader
      .current(controller.signal)
      .then((value) => {
        if (controller.signal.aborted) return;
        setLoaded({ key, value });
        setError(undefined);
        setRefreshedAt(Date.now());
      })
      .catch((exc: unknown) => {
        if (controller.signal.aborted) return;
        setError(exc instanceof Error ? exc : new Error(String(exc)));
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, tick, state]);

  useEffect(() => {
    if (!refreshMs || state !== "active") return undefined;
    const timer = window.setInterval(() => {
      // Skip refreshes while the tab is hidden: analysts keep many tabs open.
      if (document.visibilityState !== "hidden") setTick((t) => t + 1);
    }, refreshMs);
    return () => window.clearInterval(timer);
  }, [refreshMs, state]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  // Data loaded for other inputs is never shown for these (render-time check, no stale frame).
  const data = loaded?.key === key ? loaded.value : undefined;
  return { data, error, loading, refreshedAt, reload };
}
