output "host" {
  description = "In-cluster host of the primary."
  value       = "${helm_release.timescaledb.name}.${var.namespace}.svc"
}

output "database_url" {
  description = "SQLAlchemy URL of the vigil database (vigil role)."
  value       = "postgresql+psycopg://vigil:${random_password.vigil.result}@${helm_release.timescaledb.name}.${var.namespace}.svc:5432/vigil?sslmode=require"
  sensitive   = true
}

output "mlflow_database_url" {
  description = "SQLAlchemy URL of the mlflow database, for an MLflow server's --backend-store-uri."
  value       = "postgresql+psycopg://vigil:${random_password.vigil.result}@${helm_release.timescaledb.name}.${var.namespace}.svc:5432/mlflow?sslmode=require"
  sensitive   = true
}
