import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The dev server proxies the API so the dashboard and the API share one origin, as in production
// (where `vigil run api` serves web/dist itself).
const api = process.env.VIGIL_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: { "/v1": api, "/healthz": api, "/readyz": api, "/metrics": api, "/openapi.json": api },
  },
  build: { outDir: "dist", sourcemap: true, chunkSizeWarningLimit: 900 },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
