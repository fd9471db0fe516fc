output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "EKS cluster CA (base64 PEM)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "kafka_bootstrap_plaintext" {
  description = "MSK plaintext bootstrap brokers (what Vigil's clients use today)."
  value       = aws_msk_cluster.this.bootstrap_brokers
}

output "kafka_bootstrap_tls" {
  description = "MSK TLS bootstrap brokers."
  value       = aws_msk_cluster.this.bootstrap_brokers_tls
}

output "kms_key_arn" {
  description = "KMS key encrypting EKS secrets, MSK storage and logs."
  value       = aws_kms_key.this.arn
}
