# --- What to install ------------------------------------------------------------------------

variable "image_repository" {
  description = "Vigil image repository in your registry (the image built from the repository's Dockerfile)."
  type        = string
}

variable "image_tag" {
  description = "Vigil image tag (a release tag, never latest)."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = var.image_tag != "latest" && length(var.image_tag) > 0
    error_message = "Use an immutable release tag, not latest."
  }
}

variable "image_digest" {
  description = "Optional sha256:... digest pinning the image (wins over the tag)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(sha256:[a-f0-9]{64})?$", var.image_digest))
    error_message = "image_digest must be empty or sha256:<64 hex digits>."
  }
}

variable "namespace" {
  description = "Kubernetes namespace for Vigil (created unless create_namespace is false)."
  type        = string
  default     = "vigil"
}

variable "create_namespace" {
  description = "Create the namespace (false when it is managed elsewhere)."
  type        = bool
  default     = true
}

variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "vigil"
}

variable "chart_path" {
  description = "Path of the Vigil chart; empty means the chart in this repository (../helm/vigil)."
  type        = string
  default     = ""
}

variable "extra_helm_values" {
  description = "Extra values documents (YAML strings) merged after the ones this module sets."
  type        = list(string)
  default     = []
}

# --- Endpoints ------------------------------------------------------------------------------

variable "public_hostname" {
  description = "DNS name of the API and dashboard (Ingress host; also used in alert links)."
  type        = string
}

variable "ingress_class_name" {
  description = "IngressClass of your ingress controller."
  type        = string
  default     = "nginx"
}

variable "tls_secret_name" {
  description = "Existing TLS Secret for the Ingress (empty = no TLS at the Ingress)."
  type        = string
  default     = ""
}

variable "mlflow_tracking_uri" {
  description = "MLflow tracking server the detectors and training jobs use (an existing server)."
  type        = string
}

# --- Kafka ----------------------------------------------------------------------------------

variable "kafka_bootstrap" {
  description = "Existing Kafka bootstrap servers, host:port[,host:port]. Ignored when create_aws_platform creates MSK."
  type        = string
  default     = ""
}

variable "kafka_tls_enabled" {
  description = "Use TLS for Terraform's own topic administration connection."
  type        = bool
  default     = false
}

variable "create_kafka_topics" {
  description = "Create the stream topics with the Kafka provider (false when Strimzi or a platform team owns them)."
  type        = bool
  default     = true
}

variable "kafka_topic_prefix" {
  description = "Prefix for every topic name (VIGIL_KAFKA_TOPIC_PREFIX)."
  type        = string
  default     = ""
}

variable "kafka_partitions" {
  description = "Partitions of the high-volume topics; also the upper bound of useful replicas per stage."
  type        = number
  default     = 12

  validation {
    condition     = var.kafka_partitions >= 1 && var.kafka_partitions <= 1024
    error_message = "kafka_partitions must be between 1 and 1024."
  }
}

variable "kafka_replication_factor" {
  description = "Replication factor of the topics."
  type        = number
  default     = 3
}

# --- Database -------------------------------------------------------------------------------

variable "database_url" {
  description = "SQLAlchemy URL of an existing PostgreSQL/TimescaleDB (postgresql+psycopg://...). Ignored when create_timescaledb is true."
  type        = string
  default     = ""
  sensitive   = true
}

variable "create_timescaledb" {
  description = "Install TimescaleDB in the cluster with its Helm chart (timescaledb-single)."
  type        = bool
  default     = false
}

variable "timescaledb_chart_repository" {
  description = "Helm repository serving the timescaledb-single chart (required when create_timescaledb)."
  type        = string
  default     = ""
}

variable "timescaledb_chart_version" {
  description = "timescaledb-single chart version."
  type        = string
  default     = "0.33.1"
}

variable "timescaledb_storage_size" {
  description = "Data volume size of each TimescaleDB replica."
  type        = string
  default     = "100Gi"
}

variable "timescaledb_replicas" {
  description = "TimescaleDB (Patroni) replicas: 1 leader plus streaming replicas."
  type        = number
  default     = 2
}

# --- Alerting secrets -----------------------------------------------------------------------

variable "slack_webhook_url" {
  description = "Slack incoming webhook for alert notifications (stored in a Secret, never in values)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "smtp_password" {
  description = "SMTP password for email notifications (stored in a Secret)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "alerting_settings" {
  description = "Non-secret alerting variables (SMTP host/username, sender, recipients) without the VIGIL_ prefix, e.g. { alerting_smtp_host = \"smtp.example.invalid\" }."
  type        = map(string)
  default     = {}
}

# --- Scaling and monitoring -----------------------------------------------------------------

variable "enable_keda" {
  description = "Scale stream stages on Kafka consumer lag with KEDA ScaledObjects (KEDA must be installed)."
  type        = bool
  default     = false
}

variable "keda_max_replicas" {
  description = "Upper bound of replicas per stream stage (more than kafka_partitions would idle)."
  type        = number
  default     = 12
}

variable "enable_monitoring" {
  description = "Create ServiceMonitor, PrometheusRule and the Grafana dashboard (Prometheus Operator must be installed)."
  type        = bool
  default     = false
}

# --- Cluster access -------------------------------------------------------------------------

variable "kubeconfig_path" {
  description = "kubeconfig of the existing cluster (unused when create_aws_platform is true)."
  type        = string
  default     = "~/.kube/config"
}

variable "kubeconfig_context" {
  description = "kubeconfig context (null = current context)."
  type        = string
  default     = null
}

# --- Optional AWS platform (EKS + MSK) ------------------------------------------------------

variable "create_aws_platform" {
  description = "Create an EKS cluster and an MSK Kafka cluster in an existing VPC."
  type        = bool
  default     = false
}

variable "aws_region" {
  description = "AWS region of the platform."
  type        = string
  default     = "eu-central-1"
}

variable "cluster_name" {
  description = "Name of the EKS and MSK clusters."
  type        = string
  default     = "vigil"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.33"
}

variable "vpc_id" {
  description = "Existing VPC for EKS and MSK (required with create_aws_platform)."
  type        = string
  default     = ""
}

variable "private_subnet_ids" {
  description = "Private subnets in at least two (three for MSK) availability zones."
  type        = list(string)
  default     = []
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API publicly; empty = private endpoint only."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "EC2 instance types of the EKS managed node group."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "node_count" {
  description = "Desired, minimum and maximum nodes of the managed node group."
  type        = object({ desired = number, min = number, max = number })
  default     = { desired = 3, min = 3, max = 9 }
}

variable "msk_kafka_version" {
  description = "Apache Kafka version of MSK."
  type        = string
  default     = "3.9.x"
}

variable "msk_broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "msk_broker_count" {
  description = "MSK brokers (a multiple of the number of subnets)."
  type        = number
  default     = 3
}

variable "msk_volume_size_gb" {
  description = "EBS volume per MSK broker, GB."
  type        = number
  default     = 500
}

variable "log_retention_days" {
  description = "CloudWatch retention of EKS control-plane and MSK broker logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags on every AWS resource."
  type        = map(string)
  default     = { project = "vigil" }
}
