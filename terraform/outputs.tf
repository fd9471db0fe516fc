output "api_url" {
  description = "URL of the Vigil API and dashboard."
  value       = module.vigil.api_url
}

output "namespace" {
  description = "Namespace Vigil runs in."
  value       = module.vigil.namespace
}

output "release_name" {
  description = "Helm release name (for helm history / rollback)."
  value       = module.vigil.release_name
}

output "kafka_bootstrap" {
  description = "Kafka bootstrap servers the services use."
  value       = local.kafka_bootstrap
}

output "topics" {
  description = "Full names of the stream topics."
  value       = [for name in keys(local.topics) : "${var.kafka_topic_prefix}${name}"]
}

output "eks_cluster_name" {
  description = "EKS cluster name (null unless create_aws_platform); use with `aws eks update-kubeconfig`."
  value       = var.create_aws_platform ? module.aws_platform[0].cluster_name : null
}

output "database_secret_name" {
  description = "Secret holding VIGIL_DATABASE_URL (back it up with the database credentials)."
  value       = module.vigil.database_secret_name
}
