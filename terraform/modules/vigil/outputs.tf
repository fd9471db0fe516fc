output "api_url" {
  description = "URL of the API and dashboard."
  value       = local.api_url
}

output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.vigil.namespace
}

output "release_name" {
  description = "Helm release name."
  value       = helm_release.vigil.name
}

output "database_secret_name" {
  description = "Secret holding VIGIL_DATABASE_URL."
  value       = kubernetes_secret.database.metadata[0].name
}
