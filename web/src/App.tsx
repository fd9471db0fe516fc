import { Navigate, Route, Routes, useLocation } from "react-router-dom";

import { useAuth } from "./auth/AuthContext";
import { Shell } from "./components/Shell";
import { AlertsPage } from "./pages/Alerts";
import { CasePage } from "./pages/CaseDetail";
import { HealthPage } from "./pages/Health";
import { LoginPage } from "./pages/Login";
import { ModelsPage } from "./pages/Models";
import { OverviewPage } from "./pages/Overview";
import { QueuePage, TransactionRedirect } from "./pages/Queue";
import { RuleDetailPage, RulesPage } from "./pages/Rules";

export function App() {
  const { state } = useAuth();
  const location = useLocation();
  if (state === "restoring") {
    return (
      <p className="restoring" role="status">
        Restoring your session…
      </p>
    );
  }
  if (state === "anonymous") {
    // Keep the requested URL (filters included): signing in lands exactly there.
    return <LoginPage key={location.pathname} />;
  }
  return (
    <Shell>
      <Routes>
        <Route path="/" element={<OverviewPage />} />
        <Route path="/queue" element={<QueuePage />} />
        <Route path="/cases/:caseId" element={<CasePage />} />
        <Route path="/transactions/:transactionId" element={<TransactionRedirect />} />
        <Route path="/rules" element={<RulesPage />} />
        <Route path="/rules/:ruleId" element={<RuleDetailPage />} />
        <Route path="/models" element={<ModelsPage />} />
        <Route path="/alerts" element={<AlertsPage />} />
        <Route path="/health" element={<HealthPage />} />
        <Route path="*" element={<Navigate to="/" replace />} />
      </Routes>
    </Shell>
  );
}
