# Kubernetes and Helm talk to the EKS cluster this configuration creates, or to an existing
# cluster through a kubeconfig. With create_aws_platform, apply in two steps the first time:
#   terraform apply -target=module.aws_platform   then   terraform apply
# (providers cannot be configured from values that are unknown until the cluster exists).

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = var.tags
  }
}

data "aws_eks_cluster_auth" "this" {
  count = var.create_aws_platform ? 1 : 0
  name  = module.aws_platform[0].cluster_name
}

locals {
  eks_endpoint = var.create_aws_platform ? module.aws_platform[0].cluster_endpoint : null
  eks_ca       = var.create_aws_platform ? base64decode(module.aws_platform[0].cluster_certificate_authority) : null
  eks_token    = var.create_aws_platform ? data.aws_eks_cluster_auth.this[0].token : null
}

provider "kubernetes" {
  host                   = local.eks_endpoint
  cluster_ca_certificate = local.eks_ca
  token                  = local.eks_token
  config_path            = var.create_aws_platform ? null : var.kubeconfig_path
  config_context         = var.create_aws_platform ? null : var.kubeconfig_context
}

provider "helm" {
  kubernetes {
    host                   = local.eks_endpoint
    cluster_ca_certificate = local.eks_ca
    token                  = local.eks_token
    config_path            = var.create_aws_platform ? null : var.kubeconfig_path
    config_context         = var.create_aws_platform ? null : var.kubeconfig_context
  }
}

# Topics are created through the brokers' admin API, reachable from where Terraform runs.
provider "kafka" {
  bootstrap_servers = split(",", local.kafka_bootstrap)
  tls_enabled       = var.kafka_tls_enabled
  skip_tls_verify   = false
}
