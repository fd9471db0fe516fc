# Vigil on Kubernetes: optional AWS platform (EKS + MSK), optional in-cluster TimescaleDB,
# the stream topics, and the Vigil Helm release with its namespace and secrets.

locals {
  kafka_bootstrap = var.create_aws_platform ? module.aws_platform[0].kafka_bootstrap_plaintext : var.kafka_bootstrap
  database_url    = var.create_timescaledb ? module.timescaledb[0].database_url : var.database_url
  chart_path      = var.chart_path != "" ? var.chart_path : "${path.module}/../helm/vigil"

  # Mirrors core/topics.py (names, retention) and the chart's `topics` values.
  topics = {
    "tx.raw"      = { partitions = var.kafka_partitions, config = { "retention.ms" = "604800000" } }
    "tx.valid"    = { partitions = var.kafka_partitions, config = { "retention.ms" = "604800000" } }
    "tx.features" = { partitions = var.kafka_partitions, config = { "retention.ms" = "259200000" } }
    "tx.dlq"      = { partitions = 1, config = { "retention.ms" = "2592000000" } }
    "anomalies"   = { partitions = var.kafka_partitions, config = { "retention.ms" = "604800000" } }
    "labels"      = { partitions = 1, config = { "cleanup.policy" = "compact" } }
  }
}

check "inputs" {
  assert {
    condition     = local.kafka_bootstrap != ""
    error_message = "Set kafka_bootstrap, or create_aws_platform = true to create MSK."
  }
  assert {
    condition     = var.create_timescaledb || var.database_url != ""
    error_message = "Set database_url, or create_timescaledb = true to install TimescaleDB."
  }
  assert {
    condition     = !var.create_timescaledb || var.timescaledb_chart_repository != ""
    error_message = "create_timescaledb needs timescaledb_chart_repository."
  }
  assert {
    condition     = !var.create_aws_platform || (var.vpc_id != "" && length(var.private_subnet_ids) >= 2)
    error_message = "create_aws_platform needs vpc_id and at least two private_subnet_ids."
  }
}

module "aws_platform" {
  source = "./modules/aws-platform"
  count  = var.create_aws_platform ? 1 : 0

  name                  = var.cluster_name
  kubernetes_version    = var.kubernetes_version
  vpc_id                = var.vpc_id
  subnet_ids            = var.private_subnet_ids
  public_access_cidrs   = var.eks_public_access_cidrs
  node_instance_types   = var.node_instance_types
  node_count            = var.node_count
  kafka_version         = var.msk_kafka_version
  broker_instance_type  = var.msk_broker_instance_type
  broker_count          = var.msk_broker_count
  broker_volume_size_gb = var.msk_volume_size_gb
  default_replication   = var.kafka_replication_factor
  default_partitions    = var.kafka_partitions
  log_retention_days    = var.log_retention_days
}

resource "kubernetes_namespace" "vigil" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "vigil"
      # Vigil pods meet "restricted"; the TimescaleDB chart needs "baseline" when it shares the namespace.
      "pod-security.kubernetes.io/enforce" = var.create_timescaledb ? "baseline" : "restricted"
      "pod-security.kubernetes.io/warn"    = "restricted"
    }
  }
}

module "timescaledb" {
  source = "./modules/timescaledb"
  count  = var.create_timescaledb ? 1 : 0

  namespace        = var.create_namespace ? kubernetes_namespace.vigil[0].metadata[0].name : var.namespace
  chart_repository = var.timescaledb_chart_repository
  chart_version    = var.timescaledb_chart_version
  replicas         = var.timescaledb_replicas
  storage_size     = var.timescaledb_storage_size
}

module "kafka_topics" {
  source = "./modules/kafka-topics"
  count  = var.create_kafka_topics ? 1 : 0

  topics             = local.topics
  prefix             = var.kafka_topic_prefix
  replication_factor = var.kafka_replication_factor
}

module "vigil" {
  source = "./modules/vigil"

  namespace           = var.create_namespace ? kubernetes_namespace.vigil[0].metadata[0].name : var.namespace
  release_name        = var.release_name
  chart_path          = local.chart_path
  image_repository    = var.image_repository
  image_tag           = var.image_tag
  image_digest        = var.image_digest
  kafka_bootstrap     = local.kafka_bootstrap
  kafka_topic_prefix  = var.kafka_topic_prefix
  kafka_partitions    = var.kafka_partitions
  kafka_replication   = var.kafka_replication_factor
  database_url        = local.database_url
  mlflow_tracking_uri = var.mlflow_tracking_uri
  public_hostname     = var.public_hostname
  ingress_class_name  = var.ingress_class_name
  tls_secret_name     = var.tls_secret_name
  slack_webhook_url   = var.slack_webhook_url
  smtp_password       = var.smtp_password
  alerting_settings   = var.alerting_settings
  enable_keda         = var.enable_keda
  keda_max_replicas   = var.keda_max_replicas
  enable_monitoring   = var.enable_monitoring
  extra_values        = var.extra_helm_values

  # Topics and the database exist before the release's migration hook runs.
  depends_on = [module.kafka_topics, module.timescaledb]
}
